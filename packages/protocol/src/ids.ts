// Branded ids: strings that were checked once, at the edge, so a node key cannot be passed where a
// dispatch id or a payer is meant. A brand is still a string (assignable to `string`), so code that
// keeps plain strings keeps working; only values typed with a brand need one of the constructors.
import { z } from 'zod';
import { isValidPublicKey } from './keys';
import { FedAiError } from './reasons';

declare const BRAND: unique symbol;
export type Brand<T, Name extends string> = T & { readonly [BRAND]: Name };

/** A node's id: its x-only public key, 64 lower-case hex, a point on secp256k1. */
export type NodeId = Brand<string, 'NodeId'>;
/** A request id as the metering record carries it: the router's dispatch id (8-128 of `A-Za-z0-9_-:.`). */
export type DispatchId = Brand<string, 'DispatchId'>;
/** Who pays: the owner of a tab at settlement (1-160 printable characters). */
export type PayerId = Brand<string, 'PayerId'>;

const DISPATCH_ID = /^[A-Za-z0-9_\-:.]{8,128}$/;
const PAYER_ID = /^[\x21-\x7e]{1,160}$/;

export function isNodeId(value: unknown): value is NodeId {
  return typeof value === 'string' && isValidPublicKey(value);
}

export function isDispatchId(value: unknown): value is DispatchId {
  return typeof value === 'string' && DISPATCH_ID.test(value);
}

export function isPayerId(value: unknown): value is PayerId {
  return typeof value === 'string' && PAYER_ID.test(value);
}

/** Checks and brands a node id; throws FedAiError BAD_KEY otherwise. */
export function nodeId(value: string): NodeId {
  if (!isNodeId(value)) throw new FedAiError('BAD_KEY', 'A node id is a 64 lower-case hex public key.');
  return value;
}

/** Checks and brands a dispatch id; throws FedAiError BAD_SHAPE otherwise. */
export function dispatchId(value: string): DispatchId {
  if (!isDispatchId(value)) {
    throw new FedAiError('BAD_SHAPE', 'A dispatch id is 8-128 letters, digits or _-:. characters.');
  }
  return value;
}

/** Checks and brands a payer id; throws FedAiError BAD_SHAPE otherwise. */
export function payerId(value: string): PayerId {
  if (!isPayerId(value)) throw new FedAiError('BAD_SHAPE', 'A payer id is 1-160 printable characters.');
  return value;
}

/** zod schemas for parsing ids at an edge. */
export const nodeIdSchema = z.custom<NodeId>(isNodeId, 'expected a node id (64 hex, a point on secp256k1)');
export const dispatchIdSchema = z.custom<DispatchId>(isDispatchId, 'expected a dispatch id');
export const payerIdSchema = z.custom<PayerId>(isPayerId, 'expected a payer id');
