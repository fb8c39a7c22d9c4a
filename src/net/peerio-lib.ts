// bun:ffi bindings of native/peerio.c (TAP batch I/O via io_uring or plain loops, batch memory).
import { dlopen, FFIType } from "bun:ffi";
import { nativeLibraryPath } from "../native/lib.ts";

function open() {
  return dlopen(nativeLibraryPath("peerio"), {
    pio_open: { args: [FFIType.i32, FFIType.u32, FFIType.i32, FFIType.ptr], returns: FFIType.ptr },
    pio_close: { args: [FFIType.ptr], returns: FFIType.void },
    pio_send: { args: [FFIType.ptr, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr], returns: FFIType.i32 },
    pio_recv: { args: [FFIType.ptr, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr], returns: FFIType.i32 },
    pio_offload: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    pio_alloc: { args: [FFIType.u64], returns: FFIType.ptr },
    pio_free: { args: [FFIType.ptr], returns: FFIType.void },
    pio_fill: { args: [FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  }).symbols;
}
let lib: ReturnType<typeof open> | undefined;
export function peerio() {
  return (lib ??= open());
}
