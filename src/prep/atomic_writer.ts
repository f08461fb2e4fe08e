// atomic_writer.ts — a JSONL file written through a temporary name and renamed when complete, so a killed
// prep never leaves a half-written stage output that a restart would mistake for a finished one.
import fs from 'node:fs';
import path from 'node:path';

export class AtomicJsonlWriter {
  private readonly tmp: string;
  private fd: number;
  private pending: string[] = [];
  private pendingBytes = 0;
  lines = 0;
  bytes = 0;

  constructor(readonly file: string) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    this.tmp = `${file}.partial`;
    this.fd = fs.openSync(this.tmp, 'w');
  }

  write(obj: unknown): void {
    const line = JSON.stringify(obj) + '\n';
    this.pending.push(line);
    this.pendingBytes += line.length;
    this.lines++;
    if (this.pendingBytes > 4 << 20) this.flush();
  }

  private flush(): void {
    if (!this.pending.length) return;
    const buf = Buffer.from(this.pending.join(''), 'utf8');
    let off = 0;
    while (off < buf.length) off += fs.writeSync(this.fd, buf, off, buf.length - off);
    this.bytes += buf.length;
    this.pending = [];
    this.pendingBytes = 0;
  }

  commit(): void {
    this.flush();
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    fs.renameSync(this.tmp, this.file);
  }

  abort(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      /* already closed */
    }
    fs.rmSync(this.tmp, { force: true });
  }
}

export function writeJsonAtomic(file: string, obj: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.partial`;
  fs.writeFileSync(tmp, JSON.stringify(obj, null, 2) + '\n');
  fs.renameSync(tmp, file);
}
