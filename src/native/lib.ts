// Locates a native/ library: inside the compiled binary, the copy it carries (embedded.ts); from a
// checkout, native/build/lib<name>.so, built on first use, so no manual build step exists.
import { existsSync } from "node:fs";
import { join } from "node:path";
// @ts-ignore: plain ESM shared with npm's postinstall
import { buildNative } from "../../native/build.mjs";
import { embeddedLibraryPath } from "./embedded.ts";

const nativeDir = join(import.meta.dir, "..", "..", "native");
let built = false;

/** Path of lib<name>.so to dlopen; from a checkout, (re)builds native/ if a source is newer. */
export function nativeLibraryPath(name: string): string {
  // A binary never builds: the host has no gcc and no sources, and its libraries match its code.
  if (Bun.isStandaloneExecutable) return embeddedLibraryPath(name);
  if (!built) {
    buildNative({ quiet: true });
    built = true;
  }
  const path = join(nativeDir, "build", `lib${name}.so`);
  if (!existsSync(path)) throw new Error(`qnicd: native library ${name} is missing: expected native/${name}.c to build into ${path}`);
  return path;
}
