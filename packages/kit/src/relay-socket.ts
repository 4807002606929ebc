// The WebSocket class services hand to nostr-tools for relay connections: the `ws` client with a
// frame size bound (its default is 100 MiB) and an error listener that is never removed.
//
// Why the listener: nostr-tools (2.25) calls `close()` on a socket that is still connecting (on its
// connect timeout, and when a relay or pool is closed) and clears `onerror` in the same tick. `ws`
// reports that abort as an 'error' event on the next tick; with no listener left, Node raises it as
// an uncaught exception and the whole service dies. nostr-tools learns of the drop from `onclose`
// or its own timeout either way, so the event carries nothing to act on.
import WebSocket from 'ws';

/** A `ws` subclass for nostr-tools' `websocketImplementation` / `useWebSocketImplementation`. */
export function relaySocketClass(
  maxPayloadBytes: number,
): new (
  address: string | URL,
  protocols?: string | string[],
) => WebSocket {
  return class RelaySocket extends WebSocket {
    constructor(address: string | URL, protocols?: string | string[]) {
      super(address, protocols, { maxPayload: maxPayloadBytes });
      this.on('error', ignoreAbortedConnect);
    }
  };
}

function ignoreAbortedConnect(): void {}
