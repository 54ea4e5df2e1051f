// Run a Python script on real MicroPython (the WebAssembly port, under Node).
//
//   node tools/mpy/run.mjs [--lib NAME=HOST_PATH]... [--file MP_PATH=HOST_PATH]...
//                          [--heap BYTES] --script HOST_PATH|-
//
//   --lib NAME=HOST_PATH   copy a host folder tree (a package) to /lib/NAME/, or a host file to
//                          /lib/NAME; /lib is on MicroPython's sys.path.
//   --file MP_PATH=HOST    copy one host file to an absolute MicroPython path (parents made).
//   --heap BYTES           initial MicroPython heap (the loader's `heapsize`; the heap of this
//                          port grows on demand, so this is a starting size, not a cap).
//   --script PATH          the script to run; `-` reads it from standard input.
//   --then CODE --times N  after the script, run CODE N times, each as its own top-level run.
//                          This port's collector runs only between top-level runs (it cannot
//                          scan the WebAssembly stack: gc.collect() inside a run just asks for
//                          a collection), so this is how a long loop gets collected as it goes.
//   --rpc                  bridge mode: Python gets a module `host` whose `call(text)` writes
//                          `text` as one line to stdout and returns the next line read from
//                          stdin, synchronously; MicroPython's own output then goes to stderr.
//                          A CPython harness on the other end of the pipes plays the board's
//                          peripherals (network, card reader, keypad).
//
// MicroPython's stdout goes to Node's stdout and its stderr to Node's stderr, byte for byte.
// Exit status: 0 when the script ends; 1 and the traceback on stderr for an uncaught Python
// exception; N for `sys.exit(N)`; 2 for a usage error or a failure of the runner itself.

import fs from "node:fs";
import path from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const EXIT_PYTHON_ERROR = 1;
const EXIT_RUNNER_ERROR = 2;
const OUTPUT_FLUSH_BYTES = 8192;
const SKIPPED_DIRECTORY_NAMES = new Set(["__pycache__", "node_modules"]);

function usage(message) {
  process.stderr.write(`run.mjs: ${message}\n`);
  process.exit(EXIT_RUNNER_ERROR);
}

function splitMapping(option, value) {
  const at = value === undefined ? -1 : value.indexOf("=");
  if (at <= 0 || at === value.length - 1) usage(`${option} wants TARGET=HOST_PATH, got ${value}`);
  return [value.slice(0, at), path.resolve(value.slice(at + 1))];
}

function parseArguments(argv) {
  const options = {
    libs: [], files: [], heapBytes: undefined, script: undefined, rpc: false,
    then: undefined, times: 0,
  };
  for (let index = 0; index < argv.length; index += 1) {
    const option = argv[index];
    if (option === "--rpc") {
      options.rpc = true;
      continue;
    }
    const value = argv[index + 1];
    index += 1;
    if (option === "--lib") options.libs.push(splitMapping(option, value));
    else if (option === "--file") options.files.push(splitMapping(option, value));
    else if (option === "--heap") {
      options.heapBytes = Number.parseInt(value, 10);
      if (!(options.heapBytes > 0)) usage(`--heap wants a positive number of bytes, got ${value}`);
    } else if (option === "--script") options.script = value;
    else if (option === "--then") options.then = value;
    else if (option === "--times") {
      options.times = Number.parseInt(value, 10);
      if (!(options.times >= 0)) usage(`--times wants a count, got ${value}`);
    }
    else usage(`unknown option ${option}`);
  }
  if (options.script === undefined) usage("--script is required");
  if ((options.then === undefined) !== (options.times === 0)) usage("--then goes with --times");
  return options;
}

// Collects MicroPython's output bytes and hands them to a Node stream a line (or a block) at a
// time, so that output without a final newline is not lost.
function byteSink(stream) {
  let pending = [];
  const flush = () => {
    if (pending.length > 0) stream.write(Buffer.from(pending));
    pending = [];
  };
  const write = (bytes) => {
    for (const byte of bytes) {
      pending.push(byte);
      if (byte === 10 || pending.length >= OUTPUT_FLUSH_BYTES) flush();
    }
  };
  return { write, flush };
}

function makeDirectories(fileSystem, directory) {
  let current = "";
  for (const part of directory.split("/").filter(Boolean)) {
    current += `/${part}`;
    if (!fileSystem.analyzePath(current).exists) fileSystem.mkdir(current);
  }
}

function copyFile(fileSystem, target, hostPath) {
  makeDirectories(fileSystem, path.posix.dirname(target));
  fileSystem.writeFile(target, fs.readFileSync(hostPath));
}

function copyTree(fileSystem, target, hostPath) {
  const stat = fs.statSync(hostPath);
  if (stat.isFile()) {
    copyFile(fileSystem, target, hostPath);
    return;
  }
  makeDirectories(fileSystem, target);
  for (const entry of fs.readdirSync(hostPath, { withFileTypes: true })) {
    if (entry.name.startsWith(".") || SKIPPED_DIRECTORY_NAMES.has(entry.name)) continue;
    const hostChild = path.join(hostPath, entry.name);
    const targetChild = `${target}/${entry.name}`;
    if (entry.isDirectory()) copyTree(fileSystem, targetChild, hostChild);
    else if (entry.isFile()) copyFile(fileSystem, targetChild, hostChild);
  }
}

// Synchronous line-oriented request/response over stdin/stdout. Blocking reads are what the
// firmware expects of its peripherals, and they keep the Python side free of async code.
function lineChannel() {
  const chunk = Buffer.alloc(65536);
  let buffered = Buffer.alloc(0);
  const readLine = () => {
    for (;;) {
      const newline = buffered.indexOf(10);
      if (newline >= 0) {
        const line = buffered.subarray(0, newline).toString("utf8");
        buffered = buffered.subarray(newline + 1);
        return line;
      }
      let count;
      try {
        count = fs.readSync(0, chunk, 0, chunk.length, null);
      } catch (error) {
        if (error.code === "EAGAIN") continue;
        throw error;
      }
      if (count === 0) throw new Error("rpc: the harness closed stdin");
      buffered = Buffer.concat([buffered, chunk.subarray(0, count)]);
    }
  };
  return {
    call(text) {
      fs.writeSync(1, `${text}\n`);
      return readLine();
    },
  };
}

function exitStatusOf(error) {
  if (error?.type !== "SystemExit") return EXIT_PYTHON_ERROR;
  const lastLine = error.message.trim().split("\n").pop();
  const match = /^SystemExit(?::\s*(-?\d*|None))?$/.exec(lastLine);
  if (match === null) return EXIT_PYTHON_ERROR; // sys.exit("message")
  return match[1] && match[1] !== "None" ? Number.parseInt(match[1], 10) : 0;
}

async function main() {
  const options = parseArguments(process.argv.slice(2));
  const script =
    options.script === "-" ? fs.readFileSync(0, "utf8") : fs.readFileSync(options.script, "utf8");

  const stdout = byteSink(options.rpc ? process.stderr : process.stdout);
  const stderr = byteSink(process.stderr);
  const loaderOptions = { stdout: stdout.write, stderr: stderr.write, linebuffer: false };
  if (options.heapBytes !== undefined) loaderOptions.heapsize = options.heapBytes;
  const micropython = await loadMicroPython(loaderOptions);

  if (options.rpc) micropython.registerJsModule("host", lineChannel());
  makeDirectories(micropython.FS, "/lib");
  for (const [name, hostPath] of options.libs) copyTree(micropython.FS, `/lib/${name}`, hostPath);
  for (const [target, hostPath] of options.files) {
    if (!target.startsWith("/")) usage(`--file target must be absolute, got ${target}`);
    copyFile(micropython.FS, target, hostPath);
  }

  let status = 0;
  try {
    await micropython.runPythonAsync(script);
    for (let round = 0; round < options.times; round += 1) micropython.runPython(options.then);
  } catch (error) {
    if (error?.constructor?.name !== "PythonError") throw error;
    status = exitStatusOf(error);
    if (error.type !== "SystemExit" || status === EXIT_PYTHON_ERROR) {
      stdout.flush();
      stderr.write(Buffer.from(error.message, "utf8"));
    }
  }
  stdout.flush();
  stderr.flush();
  // Let Node drain the pipes before it exits; nothing else should keep the loop alive.
  process.exitCode = status;
}

main().catch((error) => {
  process.stderr.write(`run.mjs: ${error?.stack ?? error}\n`);
  process.exitCode = EXIT_RUNNER_ERROR;
});
