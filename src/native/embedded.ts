// The native libraries inside the compiled binary (`npm run build`, scripts/build-binary.ts).
//
// The binary embeds native/build/lib*.so as assets, but the dynamic loader cannot read Bun's
// in-binary filesystem (/$bunfs/...), and a Xen host has no gcc to build them: so the main thread
// writes them once into a fresh private directory (mkdtemp: mode 0700, under $TMPDIR or /tmp),
// loads every one of them with libc's dlopen (never closed: they stay loaded for the process's
// life), then removes the directory at once. Nothing is left on disk, even after a SIGKILL, and
// a tmp cleaner (systemd-tmpfiles) cannot pull a library from under a long-running daemon.
//
// Worker threads open the same paths later with bun:ffi's dlopen. That works after the files are
// gone because glibc first looks a path up among the objects already loaded and returns that one
// without touching the filesystem (glibc elf/dl-load.c, _dl_map_object: "Look for this name among
// those already loaded"); dlopen(3): opening an object again returns the same handle. The paths
// reach the workers through worker_threads' environment data, which every Worker created
// afterwards receives.
import { dlopen, FFIType } from "bun:ffi";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { getEnvironmentData, isMainThread, setEnvironmentData } from "node:worker_threads";

const ENV_KEY = "qnicd.embeddedNativeLibraries";
const RTLD_NOW = 2;
const LIB_NAME = /^lib([A-Za-z0-9_]+)\.so$/;

let loaded: Map<string, string> | undefined;

/** Path of lib<name>.so as loaded from the binary; the main thread loads them all on first use. */
export function embeddedLibraryPath(name: string): string {
  loaded ??= isMainThread ? loadAll() : fromMainThread();
  const path = loaded.get(name);
  if (path === undefined) {
    const have = [...loaded.keys()].join(", ") || "none";
    throw new Error(`qnicd: native library ${name} is not inside this binary (it has: ${have}): rebuild it with 'npm run build' from a checkout`);
  }
  return path;
}

function fromMainThread(): Map<string, string> {
  const shared = getEnvironmentData(ENV_KEY) as Record<string, string> | undefined;
  if (shared === undefined)
    throw new Error("qnicd: a worker thread started before the main thread loaded the binary's native libraries: this is a bug in qnicd");
  return new Map(Object.entries(shared));
}

function loadAll(): Map<string, string> {
  const blobs = Bun.embeddedFiles.filter((b) => LIB_NAME.test(basename((b as Blob & { name: string }).name)));
  const out = new Map<string, string>();
  if (blobs.length === 0) return out;
  const libc = openLibdl();
  let dir: string;
  try {
    dir = mkdtempSync(join(tmpdir(), "qnicd-native-"));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new Error(
      `qnicd: cannot create a private directory in ${tmpdir()} for the binary's native libraries (${code}): ` +
        "set TMPDIR to a writable directory that allows executables",
    );
  }
  try {
    for (const blob of blobs) {
      const file = basename((blob as Blob & { name: string }).name);
      const name = LIB_NAME.exec(file)![1];
      const path = join(dir, file);
      writeFileSync(path, readEmbedded(blob), { mode: 0o500 });
      const handle = libc.dlopen(Buffer.from(`${path}\0`), RTLD_NOW);
      if (!handle) {
        const why = libc.dlerror()?.toString() ?? "unknown error";
        throw new Error(
          `qnicd: cannot load the native library ${file} extracted to ${dir}: ${why}: ` +
            "if that filesystem is mounted noexec, point TMPDIR at one that allows executables",
        );
      }
      out.set(name, path);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  setEnvironmentData(ENV_KEY, Object.fromEntries(out));
  return out;
}

function readEmbedded(blob: Blob): Uint8Array {
  // The assets sit under the bundle's root in Bun's in-binary filesystem, where node:fs reads them
  // synchronously (Blob.bytes() would need a tick before the first library could be used).
  const name = (blob as Blob & { name: string }).name;
  return readFileSync(name.startsWith("/") ? name : join(import.meta.dir, name));
}

function openLibdl() {
  const symbols = {
    dlopen: { args: [FFIType.cstring, FFIType.i32], returns: FFIType.ptr },
    dlerror: { args: [], returns: FFIType.cstring },
  } as const;
  // glibc 2.34 moved dlopen into libc.so.6; older ones keep it in libdl.so.2.
  try {
    return dlopen("libc.so.6", symbols).symbols;
  } catch {
    return dlopen("libdl.so.2", symbols).symbols;
  }
}
