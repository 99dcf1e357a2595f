'use strict';
/**
 * Mocha reporter for .ci/run: prints what mocha's spec reporter prints, and appends one JSON line
 * {passes, failures, pending} to the file named by CI_COUNTS_FILE when the run ends, so that
 * .ci/run can add up test cases across several mocha runs (different processes, Node versions and
 * Node-RED versions) into its single closing line. A run that dies before 'end' writes nothing,
 * and .ci/run counts that as a failure.
 */
const fs = require('fs');
const Mocha = require('mocha');

const { Spec } = Mocha.reporters;
const { EVENT_RUN_END } = Mocha.Runner.constants;

class CountReporter extends Spec {
  constructor(runner, options) {
    super(runner, options);
    const file = process.env.CI_COUNTS_FILE;
    runner.once(EVENT_RUN_END, () => {
      if (!file) return;
      const { passes, failures, pending } = runner.stats;
      // Synchronous: mocha's --exit ends the process right after 'end'.
      fs.appendFileSync(file, `${JSON.stringify({ label: process.env.CI_COUNTS_LABEL || 'mocha', passes, failures, pending })}\n`);
    });
  }
}

module.exports = CountReporter;
