// Locates (and on first use builds) a native/ library, so no manual build step exists.
import { existsSync } from "node:fs";
import { join } from "node:path";
// @ts-ignore: plain ESM shared with npm's postinstall
import { buildNative } from "../../native/build.mjs";

const nativeDir = join(import.meta.dir, "..", "..", "native");
let built = false;

/** Path of native/build/lib<name>.so, (re)building native/ if a source is newer. */
export function nativeLibraryPath(name: string): string {
  if (!built) {
    buildNative({ quiet: true });
    built = true;
  }
  const path = join(nativeDir, "build", `lib${name}.so`);
  if (!existsSync(path)) throw new Error(`qnicd: native library ${name} is missing: expected native/${name}.c to build into ${path}`);
  return path;
}
