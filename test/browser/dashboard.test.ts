/**
 * examples/dashboard.json on FlowFuse Dashboard 2.0 (@flowfuse/node-red-dashboard, a
 * devDependency that Node-RED finds in the repository's node_modules), in Debian's headless
 * Chromium driven by playwright-core: the example is deployed to a real Node-RED, its inject node
 * classifies a bundled digit 20 times a second and ncs2-stats feeds the widgets every 2 s; the
 * page /dashboard/inference must show the charts, the gauge only with a temperature sensor, and the device table with the
 * cpu device's row, without errors in the page. Leaves test/browser/screenshots/dashboard.png.
 * Run by `npm run test:browser` (and .ci/run); without /usr/bin/chromium it fails and says how to
 * install it (never skips).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { RedProcess, type FlowNode } from '../e2e/harness';
import { ROOT } from '../e2e/red-boot';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = path.join(ROOT, 'test', 'browser', 'screenshots');
const EXAMPLE = path.join(ROOT, 'examples', 'dashboard.json');
const PAGE_PATH = '/dashboard/inference';

/** Dashboard 2.0 wraps every widget in a div with id nrdb-ui-widget-<node id>. */
const widget = (id: string): string => `#nrdb-ui-widget-${id}`;

describe('FlowFuse Dashboard example in headless Chromium', function () {
  this.timeout(120000);

  let red: RedProcess | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const flows = JSON.parse(fs.readFileSync(EXAMPLE, 'utf8')) as FlowNode[];
  const ofType = (type: string): FlowNode[] => flows.filter((n) => n.type === type);
  const pageErrors: string[] = [];
  const consoleErrors: string[] = [];
  const offHost: string[] = [];

  before(async function () {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} not found: this test needs Debian's chromium package (as root: apt-get update && apt-get install -y chromium; .ci/run installs it when missing)`);
    }
    fs.mkdirSync(SCREENSHOTS, { recursive: true });
    // The dashboard serves itself on Node-RED's httpNode; at the root, as in a default install,
    // so that the page is at the path the example's ui-base and ui-page name.
    red = await RedProcess.start({ settings: { httpNodeRoot: '/' } });
    const types = await red.request('GET', '/nodes', undefined, { accept: 'application/json' });
    const loaded = (types.body as Array<{ module: string; types: string[]; enabled: boolean; err?: string }>).filter((s) => s.module === '@flowfuse/node-red-dashboard');
    assert.ok(
      loaded.some((s) => s.types.includes('ui-chart') && s.enabled && !s.err),
      `Node-RED did not load @flowfuse/node-red-dashboard (npm install, it is a devDependency): ${JSON.stringify(loaded)}\n${red.logs()}`,
    );
    const comms = await red.debugStream();
    try {
      await red.deploy(flows, comms);
    } finally {
      comms.close();
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    // Everything the dashboard needs comes from Node-RED; requests to other hosts are refused
    // (no network here) and listed in a failure message.
    await page.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.hostname === '127.0.0.1' || url.protocol === 'data:' || url.protocol === 'blob:') return route.continue();
      offHost.push(url.href);
      return route.abort();
    });
    await page.goto(`${red.url}${PAGE_PATH}`);
  });

  after(async function () {
    await browser?.close();
    await red?.stop();
  });

  afterEach(function () {
    assert.deepEqual(pageErrors, [], `the dashboard threw in the page: ${pageErrors.join(' | ')}`);
  });

  it('renders the four ui-chart widgets as charts: throughput and latency per device, request stages, temperature', async function () {
    // The temperature chart sits in the group a ui-control shows once a sensor reports; see below.
    const charts = ofType('ui-chart').filter((c) => !/Temperature/.test(String(c.label)));
    assert.equal(ofType('ui-chart').length, 4);
    for (const chart of charts) {
      // ECharts draws on a canvas (or an svg with the svg renderer).
      const drawn = page.locator(`${widget(chart.id)} canvas, ${widget(chart.id)} svg`).first();
      await drawn.waitFor({ state: 'visible', timeout: 60000 });
      const box = await drawn.boundingBox();
      assert.ok(box && box.width > 100 && box.height > 100, `chart "${String(chart.label)}" is ${JSON.stringify(box)}`);
    }
  });

  it('fills the ui-table with the cpu device row from ncs2-stats', async function () {
    const [table] = ofType('ui-table');
    const [device] = ofType('ncs2-device');
    // The engine names a device <kind>-<config node id>. ncs2-stats sends its rows every 2 s; the
    // first one may precede the page's connection.
    const deviceId = `${String(device.kind)}-${device.id}`;
    const row = page.locator(`${widget(table.id)} tbody tr`, { hasText: deviceId });
    await row.first().waitFor({ state: 'visible', timeout: 30000 });
    const headers = await page.locator(`${widget(table.id)} thead th`).allInnerTexts();
    assert.ok(headers.some((h) => h.includes('inferences/s')), `table headers: ${JSON.stringify(headers)}`);
    const cells = await row.first().locator('td').allInnerTexts();
    // The inject node keeps the cpu device busy, so its throughput is a positive number.
    const fps = Number(cells[1]);
    assert.ok(fps > 0, `cpu row: ${JSON.stringify(cells)}`);
  });

  it('shows the temperature gauge only when the device reports a temperature', async function () {
    const [table] = ofType('ui-table');
    const [gauge] = ofType('ui-gauge');
    // Two stats intervals: the temperature, if there is one, has been sent by now.
    await page.waitForTimeout(4500);
    const cells = await page.locator(`${widget(table.id)} tbody tr`).first().locator('td').allInnerTexts();
    const drawn = page.locator(`${widget(gauge.id)} svg`).first();
    if (cells[6].trim() === '') {
      // No sensor (most containers and VMs): no gauge stuck at 0.
      assert.equal(await drawn.isVisible(), false, 'a temperature gauge without a sensor');
    } else {
      await drawn.waitFor({ state: 'visible', timeout: 30000 });
      const box = await drawn.boundingBox();
      assert.ok(box && box.width > 50 && box.height > 30, `gauge is ${JSON.stringify(box)}`);
    }
  });

  it('shows the about text and leaves a screenshot, with no request to another host', async function () {
    // Two stats intervals so that the lines have more than one point.
    await page.waitForTimeout(4500);
    const about = ofType('ui-template')[0];
    await page.locator(widget(about.id)).getByText('Prometheus').waitFor({ state: 'attached' });
    // The dashboard is a PWA and announces its service worker ("App is offline ready") in a toast
    // that would cover part of the screenshot.
    const toast = page.getByRole('button', { name: 'Close' });
    if (await toast.count()) {
      await toast.first().click();
      await page.getByText('App is offline ready').waitFor({ state: 'hidden' });
    }
    await page.screenshot({ path: path.join(SCREENSHOTS, 'dashboard.png'), type: 'png', fullPage: false });
    assert.deepEqual(offHost, [], `the dashboard asked other hosts for: ${offHost.join(', ')}`);
    assert.deepEqual(consoleErrors, [], `errors in the page console: ${consoleErrors.join(' | ')}`);
  });
});
