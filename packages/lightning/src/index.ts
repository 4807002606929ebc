export * from './backend';
export * from './bolt11';
export * from './cln';
export * from './internal';
export * from './lnbits';
export * from './lnd';
export * from './nwc';
export * from './settlement-account';
