// A self-signed certificate for 127.0.0.1 (P-256, valid until 2126), made once with
// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500
// -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1` and kept as a fixture, so the TLS
// tests need no openssl at run time. Test-only: the key guards nothing.
import { readFileSync } from 'node:fs';

export function testTlsCert(): { key: string; cert: string } {
  const dir = new URL('./fixtures/', import.meta.url);
  return {
    key: readFileSync(new URL('tls-test-key.pem', dir), 'utf8'),
    cert: readFileSync(new URL('tls-test-cert.pem', dir), 'utf8'),
  };
}
