// The configuration room's public face: the daemon imports from here only.
export { loadConfig, isHelpRequested, type Config, type LoadConfigInput } from "./load-config.ts";
export { helpText } from "./help.ts";
export { resolvePlatform, type PathProbe } from "./resolve-platform.ts";
export { ConfigError } from "./config-error.ts";
export { formatHttpAddress, isLoopbackHost, type HttpAddress } from "./http-address.ts";
