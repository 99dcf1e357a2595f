#!/usr/bin/env node
/**
 * Why does the event loop wait? Runs a command, records the kernel's scheduler events (tracefs
 * sched_wakeup and sched_switch) for a window of its run, and reports how long its main thread
 * waited for a core after each wake-up, and for the longest waits which threads held that core,
 * with their scheduling policy and nice value. The event-loop delay counts these waits, but
 * perf_hooks cannot tell them from work on the main thread. Linux only; needs root (tracefs).
 *
 *   sudo node scripts/main-thread-waits.js --after 5 --for 5 -- node dist/bench/pipeline.js --rounds 1
 *
 * Written by hand: perf and bpftrace would do the capture but are rarely installed on an edge box,
 * and neither attributes a wait to the threads that held the core.
 */
const fs = require('fs');
const { spawn } = require('child_process');
const { Command } = require('commander');

const TRACING = '/sys/kernel/tracing';
const EVENTS = ['sched/sched_wakeup', 'sched/sched_switch'];
const POLICIES = { 0: 'normal', 1: 'fifo', 2: 'rr', 3: 'batch', 5: 'idle', 6: 'deadline' };

function write(file, value) {
  fs.writeFileSync(`${TRACING}/${file}`, String(value));
}

function ensureTracefs() {
  if (fs.existsSync(`${TRACING}/events/sched`)) return;
  throw new Error(`${TRACING} is not mounted or not readable: run as root (mount -t tracefs nodev ${TRACING} if it is empty)`);
}

/** comm, policy and nice of every thread of pid, read while it runs (the trace has no policies). */
function threadsOf(pid) {
  const threads = new Map();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd on
      const comm = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      threads.set(tid, { comm, policy: POLICIES[fields[38]] ?? fields[38], nice: Number(fields[16]) });
    } catch {
      // the thread ended meanwhile
    }
  }
  return threads;
}

const LINE = /^\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+): (sched_\w+): (.*)$/;

/**
 * The main thread's waits from wake-up to running, longest first, each with the threads that held
 * the CPU it was woken on meanwhile (tid '0' is the idle CPU: a halted virtual CPU being resumed).
 */
function analyseTrace(text, mainPid) {
  const running = new Map(); // cpu -> { tid, since }
  const held = []; // { cpu, tid, from, to }
  const waits = [];
  let woken;
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const [, , , cpu, ts, event, rest] = m;
    const t = Number(ts) * 1000;
    if (event === 'sched_wakeup') {
      const w = /pid=(\d+) .*target_cpu=(\d+)/.exec(rest);
      if (w && w[1] === mainPid) woken = { at: t, cpu: Number(w[2]) };
    } else if (event === 'sched_switch') {
      const s = /prev_pid=(\d+) .*next_pid=(\d+)/.exec(rest);
      if (!s) continue;
      const c = Number(cpu);
      const prev = running.get(c);
      if (prev) held.push({ cpu: c, tid: prev.tid, from: prev.since, to: t });
      running.set(c, { tid: s[2], since: t });
      if (s[2] === mainPid && woken) {
        waits.push({ from: woken.at, to: t, ms: t - woken.at, cpu: woken.cpu });
        woken = undefined;
      }
    }
  }
  waits.sort((a, b) => b.ms - a.ms);
  return waits.map((w) => {
    const byThread = new Map();
    for (const h of held) {
      const overlap = h.cpu === w.cpu ? Math.min(h.to, w.to) - Math.max(h.from, w.from) : 0;
      if (overlap > 0) byThread.set(h.tid, (byThread.get(h.tid) ?? 0) + overlap);
    }
    const holders = [...byThread].sort((a, b) => b[1] - a[1]).map(([tid, ms]) => ({ tid, ms }));
    return { ms: w.ms, cpu: w.cpu, holders };
  });
}

function report(waits, mainPid, threads, top) {
  const name = (tid) => {
    if (tid === '0') return 'idle CPU';
    const th = threads.get(tid);
    return th ? `${th.comm} ${tid} (${th.policy}, nice ${th.nice})` : `thread ${tid} (other process or ended)`;
  };
  const over = (ms) => waits.filter((w) => w.ms > ms).length;
  console.log(`main thread ${mainPid}: ${waits.length} wake-ups; waits > 1 ms: ${over(1)}, > 2 ms: ${over(2)}, > 4 ms: ${over(4)}; longest ${waits.length ? waits[0].ms.toFixed(2) : 0} ms`);
  for (const w of waits.slice(0, top)) {
    const holders = w.holders.map((h) => `${name(h.tid)} ${h.ms.toFixed(2)} ms`);
    console.log(`  ${w.ms.toFixed(2)} ms on CPU ${w.cpu}: ${holders.join('; ') || 'no switch recorded'}`);
  }
}

async function main() {
  const opts = new Command()
    .name('main-thread-waits')
    .usage('[options] -- <command...>')
    .option('--after <s>', 'seconds after the start before recording', Number, 5)
    .option('--for <s>', 'seconds to record', Number, 5)
    .option('--top <n>', 'longest waits to explain', Number, 8)
    .option('--trace-kb <kb>', 'trace buffer per CPU (KB)', Number, 65536)
    .allowExcessArguments(true)
    .parse(process.argv);
  const options = opts.opts();
  const command = opts.args;
  if (command.length === 0) opts.error('give the command to run after --');
  for (const key of ['after', 'for', 'top', 'traceKb']) {
    if (!Number.isFinite(options[key]) || options[key] < 0) opts.error(`--${key} must be a number >= 0, got ${options[key]}`);
  }
  ensureTracefs();
  write('tracing_on', 0);
  write('trace', '');
  write('buffer_size_kb', options.traceKb);
  for (const e of EVENTS) write(`events/${e}/enable`, 1);
  let ended = false;
  const child = spawn(command[0], command.slice(1), { stdio: 'inherit' });
  const exited = new Promise((resolve, reject) => {
    child.on('exit', () => resolve((ended = true)));
    child.on('error', (err) => reject(new Error(`could not run ${command[0]}: ${err.message}`)));
  });
  const sleep = (s) => new Promise((resolve) => setTimeout(resolve, s * 1000));
  let threads = new Map();
  try {
    await Promise.race([sleep(options.after), exited]);
    if (ended) throw new Error(`the command ended before ${options.after} s`);
    write('tracing_on', 1);
    await Promise.race([sleep(options.for), exited]);
    write('tracing_on', 0);
    if (!ended) threads = threadsOf(child.pid);
  } finally {
    write('tracing_on', 0);
    for (const e of EVENTS) write(`events/${e}/enable`, 0);
  }
  const text = fs.readFileSync(`${TRACING}/trace`, 'utf8');
  write('trace', '');
  await exited;
  report(analyseTrace(text, String(child.pid)), String(child.pid), threads, options.top);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(`main-thread-waits: ${err.message}`);
    process.exitCode = 1;
  });
}

module.exports = { analyseTrace };
