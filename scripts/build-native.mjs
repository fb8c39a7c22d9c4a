// npm postinstall: build native/ once dependencies are in place.
import { buildNative } from "../native/build.mjs";
try {
  buildNative();
} catch (e) {
  console.error(e.code === "QNICD_NO_COMPILER" ? e.message : `qnicd: native build failed: ${e.message}`);
  process.exit(1);
}
