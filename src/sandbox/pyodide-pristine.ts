/**
 * The state every Pyodide call starts from, and how a worker goes back to it after a call.
 *
 * Python's whole state lives in one WebAssembly linear memory, so copying a pristine copy of it
 * back (~2-3 ms for ~30 MiB) returns the interpreter to that moment: objects, modules, builtins,
 * interpreter hooks (audit, monitoring, gc callbacks), caches, C-level state, all of it, without a
 * list of things to clean. What lives outside that memory is put back by construction too:
 *  - memory grown past the copy is zeroed (a later call's allocations must not see old bytes);
 *  - the C stack pointer (a WebAssembly global) is set back to its value at the copy;
 *  - Emscripten's file system: every node that existed at the copy is frozen (no write bits, and
 *    its setattr -- chmod, utime, truncate -- refused), so nothing outside the scratch directories
 *    can change; the scratch directories are fresh in-memory mounts for every call; the descriptor
 *    table, the working directory, and the inode and pipe/socket name counters (visible through
 *    st_ino and /proc/self/fd) are put back to their values at the copy.
 * Other JavaScript state is out of Python's reach once the bridge is sealed (see harness.py), and the
 * worker runs no JavaScript between calls but this.
 */

interface FsNode {
  id: number;
  name: string;
  mode: number;
  parent: FsNode;
  mount: { type: unknown; mountpoint: string | null };
  mounted: { root: FsNode } | null;
  contents?: Record<string, FsNode> | unknown;
  node_ops: Record<string, unknown>;
  name_next?: FsNode;
}

interface FsStream {
  fd: number | null;
  shared: Record<string, unknown>;
  [k: string]: unknown;
}

export interface EmscriptenFs {
  root: FsNode;
  streams: (FsStream | null)[];
  nameTable: (FsNode | undefined)[];
  nextInode: number;
  currentPath: string;
  filesystems: Record<string, unknown>;
  isDir(mode: number): boolean;
  isFile(mode: number): boolean;
  isLink(mode: number): boolean;
  isChrdev(mode: number): boolean;
  mount(type: unknown, opts: object, mountpoint: string): FsNode;
  unmount(mountpoint: string): void;
  close(stream: FsStream): void;
  ErrnoError: new (errno: number) => Error;
}

export interface EmscriptenModule {
  HEAPU8: Uint8Array;
  _emscripten_stack_get_current(): number;
  __emscripten_stack_restore(sp: number): void;
}

const EPERM = 63;
const WRITE_BITS = 0o222;
/** Past this much growth a worker is replaced rather than zeroing the grown memory after every call. */
export const MAX_GROWTH_BYTES = 64 << 20;

type NameCounter = { nextname: { current?: number } };

export class PristineState {
  private readonly heap: Uint8Array;
  private readonly stackPointer: number;
  private readonly streams: { stream: FsStream; own: Record<string, unknown>; shared: Record<string, unknown> }[] = [];
  private readonly streamCount: number;
  private readonly cwd: string;
  private readonly inodeBeforeScratch: number;
  private readonly nextInode: number;
  private readonly counters: { fs: NameCounter; current: number | undefined }[] = [];

  /**
   * Call once setup is complete, with no WebAssembly frame on the stack. `scratch` are mount
   * points mounted by mountScratch() before setup (their contents are never frozen).
   */
  constructor(
    private readonly module: EmscriptenModule,
    private readonly fs: EmscriptenFs,
    private readonly scratch: string[],
    inodeBeforeScratch: number,
  ) {
    this.inodeBeforeScratch = inodeBeforeScratch;
    this.freeze();
    this.cwd = fs.currentPath;
    this.nextInode = fs.nextInode;
    this.streamCount = fs.streams.length;
    fs.streams.forEach((stream) => {
      if (stream) this.streams.push({ stream, own: { ...stream }, shared: { ...stream.shared } });
    });
    for (const fsType of this.pseudoFilesystems()) this.counters.push({ fs: fsType, current: fsType.nextname.current });
    this.stackPointer = module._emscripten_stack_get_current();
    this.heap = module.HEAPU8.slice();
  }

  /** Mounts a fresh in-memory file system on each scratch directory; returns FS.nextInode before it. */
  static mountScratch(fs: EmscriptenFs, scratch: string[]): number {
    const before = fs.nextInode;
    for (const dir of scratch) fs.mount(fs.filesystems.MEMFS, {}, dir);
    return before;
  }

  /** Bytes the heap has grown past the copy. */
  growth(): number {
    return this.module.HEAPU8.length - this.heap.length;
  }

  /** Puts everything back. Call with no WebAssembly frame on the stack. */
  restore(): void {
    const heap = this.module.HEAPU8;
    heap.set(this.heap);
    if (heap.length > this.heap.length) heap.fill(0, this.heap.length);
    this.module.__emscripten_stack_restore(this.stackPointer);
    this.restoreFs();
  }

  private restoreFs(): void {
    const fs = this.fs;
    // Descriptors: close what the call opened, put back (and rewind) what it closed, moved or dup'ed over.
    const pristine = new Set(this.streams.map((s) => s.stream));
    for (const stream of fs.streams) {
      if (stream && !pristine.has(stream)) {
        try {
          fs.close(stream);
        } catch {
          // already closed, or a device that refuses: it is dropped from the table below either way
        }
      }
    }
    fs.streams.length = 0;
    fs.streams.length = this.streamCount;
    fs.streams.fill(null);
    for (const { stream, own, shared } of this.streams) {
      for (const k of Object.keys(stream)) if (!(k in own)) delete stream[k];
      Object.assign(stream, own);
      for (const k of Object.keys(stream.shared)) if (!(k in shared)) delete stream.shared[k];
      Object.assign(stream.shared, shared);
      fs.streams[stream.fd!] = stream;
    }
    for (const dir of this.scratch) fs.unmount(dir);
    fs.nextInode = this.inodeBeforeScratch;
    PristineState.mountScratch(fs, this.scratch);
    fs.nextInode = this.nextInode;
    fs.currentPath = this.cwd;
    for (const c of this.counters) c.fs.nextname.current = c.current;
  }

  /** Every node outside the scratch mounts becomes read-only for good. */
  private freeze(): void {
    const fs = this.fs;
    const frozenOps = new Map<Record<string, unknown>, Record<string, unknown>>();
    const refuse = () => {
      throw new fs.ErrnoError(EPERM);
    };
    const freezeOps = (ops: Record<string, unknown>) => {
      let f = frozenOps.get(ops);
      if (!f) {
        f = { ...ops };
        for (const k of ["setattr", "mknod", "rename", "unlink", "rmdir", "symlink"]) if (k in f) f[k] = refuse;
        frozenOps.set(ops, f);
      }
      return f;
    };
    const scratchRoots = new Set<FsNode>();
    const seen = new Set<FsNode>();
    const visit = (node: FsNode, path: string) => {
      if (seen.has(node)) return;
      seen.add(node);
      if (node.mounted) {
        if (this.scratch.includes(path)) {
          scratchRoots.add(node.mounted.root);
        } else {
          visit(node.mounted.root, path);
        }
      }
      if (scratchRoots.has(node)) return;
      // Devices keep their modes (/dev/null stays writable; writing a device changes no file).
      if (!fs.isChrdev(node.mode)) node.mode &= ~WRITE_BITS;
      node.node_ops = freezeOps(node.node_ops);
      if (fs.isDir(node.mode) && node.contents && typeof node.contents === "object") {
        for (const [name, child] of Object.entries(node.contents as Record<string, FsNode>)) {
          if (child && typeof child === "object" && "mode" in child) visit(child, path === "/" ? `/${name}` : `${path}/${name}`);
        }
      }
    };
    visit(fs.root, "/");
  }

  /** Emscripten's pipe and socket file systems, which name their nodes from a counter. */
  private pseudoFilesystems(): NameCounter[] {
    const found = new Set<NameCounter>();
    for (const head of Object.values(this.fs.nameTable)) {
      for (let node = head; node; node = node.name_next) {
        const type = node.mount?.type as Partial<NameCounter> | undefined;
        if (type && typeof type.nextname === "function") found.add(type as NameCounter);
      }
    }
    return [...found];
  }
}
