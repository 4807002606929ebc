// Preloaded into every Node process of a test run: scripts/test.mjs puts `--require` of this file
// in NODE_OPTIONS, which the services and CLIs the tests spawn inherit (V8 flags themselves are not
// allowed there). V8 waits 32x longer than its default before optimising a function with
// TurboFan: the suite's processes are short, and compiling code that would not run long enough to
// pay it back was ~20 % of the whole run's CPU (perf record of the suite, session 18). Hot loops
// still get optimised. Only when code is compiled changes, never what it does.
// Whole suite, 3 files at a time, session 18 (s wall / s CPU): default 399 / 668, 8x 353 / 561,
// 32x 333 / 541, 128x 348 / 568, TurboFan off (--no-opt) 355 / 589.
//
// WebAssembly (PGlite's PostgreSQL, ~160 databases opened per run) stays on V8's baseline compiler,
// Liftoff: tiering its big functions up to TurboFan on background threads cost more CPU than the
// tests' few queries ever win back (a process opening a database from the template and running
// 300 small transactions: 2.9 s of CPU by default, 1.9 s Liftoff only, session 19).
const v8 = require('node:v8');
v8.setFlagsFromString('--interrupt-budget=2162688');
v8.setFlagsFromString('--liftoff-only');
