export { XenstoreClient, type Watch, type WatchCallback, type XenstoreClientOptions } from "./client.ts";
export { Transaction, type TransactionOptions } from "./transaction.ts";
export { XenstoreError, XenstoreConnectionError, XenstoreTransactionConflictError, isXenstoreError } from "./errors.ts";
export { parsePerm, formatPerm, permsToString, type XsPerm, type XsAccess } from "./perms.ts";
export { unixSocketTransport, type Transport, type TransportFactory, type TransportHandlers } from "./transport.ts";
export { xenbusDeviceTransport, isCharacterDevice, XENBUS_DEVICE, XENBUS_DEVICE_MESSAGE_MAX, type DeviceFileOps } from "./xenbus-device.ts";
export type { ReconnectOptions } from "./connection.ts";
export type { XsTrace } from "./ops.ts";
