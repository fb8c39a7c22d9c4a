// A single-producer single-consumer ring of length-prefixed records in a SharedArrayBuffer: the
// pool's mailbox in each direction. Head and tail are free-running u32 byte counts; the producer
// publishes a record by storing head after writing its bytes, the consumer frees it by storing tail.
// Atomics.store/load on head and tail order the byte writes (BUN-FACTS "Shared memory").

export class ByteRing {
  private readonly words: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly mask: number;

  constructor(
    buffer: SharedArrayBuffer,
    private readonly headWord: number,
    private readonly tailWord: number,
    dataOffset: number,
    readonly capacity: number,
  ) {
    if (capacity & (capacity - 1)) throw new Error(`byte ring: capacity ${capacity} is not a power of two`);
    this.words = new Int32Array(buffer);
    this.bytes = new Uint8Array(buffer, dataOffset, capacity);
    this.mask = capacity - 1;
  }

  /** Producer: appends one record; false (nothing written) if it does not fit right now. */
  write(record: Uint8Array): boolean {
    const head = Atomics.load(this.words, this.headWord) >>> 0;
    const tail = Atomics.load(this.words, this.tailWord) >>> 0;
    const need = 4 + record.length;
    if (need > this.capacity) throw new Error(`byte ring: a ${record.length}-byte record can never fit in ${this.capacity} bytes`);
    if (this.capacity - ((head - tail) >>> 0) < need) return false;
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, record.length, true);
    this.copyIn(head, len);
    this.copyIn((head + 4) >>> 0, record);
    Atomics.store(this.words, this.headWord, (head + need) | 0);
    return true;
  }

  /** Consumer: takes the oldest record, or null when the ring is empty. */
  read(): Uint8Array | null {
    const head = Atomics.load(this.words, this.headWord) >>> 0;
    const tail = Atomics.load(this.words, this.tailWord) >>> 0;
    if (head === tail) return null;
    const lenBytes = this.copyOut(tail, 4);
    const len = new DataView(lenBytes.buffer).getUint32(0, true);
    if (len + 4 > ((head - tail) >>> 0)) throw new Error(`byte ring: corrupt record length ${len}`);
    const record = this.copyOut((tail + 4) >>> 0, len);
    Atomics.store(this.words, this.tailWord, (tail + 4 + len) | 0);
    return record;
  }

  private copyIn(at: number, src: Uint8Array): void {
    const pos = at & this.mask;
    const first = Math.min(src.length, this.capacity - pos);
    this.bytes.set(src.subarray(0, first), pos);
    if (first < src.length) this.bytes.set(src.subarray(first), 0);
  }

  private copyOut(at: number, n: number): Uint8Array {
    const out = new Uint8Array(n);
    const pos = at & this.mask;
    const first = Math.min(n, this.capacity - pos);
    out.set(this.bytes.subarray(pos, pos + first), 0);
    if (first < n) out.set(this.bytes.subarray(0, n - first), first);
    return out;
  }
}
