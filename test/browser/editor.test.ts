/**
 * The Node-RED editor with this node set, in Debian's headless Chromium driven by playwright-core:
 * the palette category and node, the three node types, and the edit dialogs of ncs2-infer and of
 * the config nodes it leads to, opened the way a person does (drag from the palette, double-click,
 * pencil buttons). Run by `npm run test:browser` (and .ci/run), not by `npm test`: it needs
 * /usr/bin/chromium, and without it the test fails and says how to install it (never skips).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { RedProcess } from '../e2e/harness';
import { ROOT } from '../e2e/red-boot';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = path.join(ROOT, 'test', 'browser', 'screenshots');
// Node-RED turns the category into an element id, replacing characters such as the space with '_'.
const CATEGORY = 'ncs2 inference';
const CATEGORY_ID = CATEGORY.replace(/[^A-Za-z0-9_-]/g, '_');
const TYPES = { device: 'ncs2-device', graph: 'ncs2-graph', infer: 'ncs2-infer' } as const;

// Globals of the editor page (the functions passed to page.evaluate run there, not in Node).
declare const RED: {
  nodes: { getType(type: string): { category: string } | undefined; eachConfig(visit: (node: { type: string; members?: unknown }) => void): void };
};
declare const document: { querySelectorAll(selector: string): { length: number } };

/** Waits until the element stops moving: trays slide in, and a screenshot mid-slide shows half a dialog. */
async function settled(page: Page, selector: string): Promise<void> {
  let last = '';
  for (let i = 0; i < 50; i++) {
    const box = JSON.stringify(await page.locator(selector).last().boundingBox());
    if (box === last && box !== 'null') return;
    last = box;
    await page.waitForTimeout(100);
  }
  throw new Error(`${selector} kept moving for 5 s`);
}

describe('Node-RED editor in headless Chromium', function () {
  this.timeout(120000);

  let red: RedProcess | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const pageErrors: string[] = [];
  const offHost: string[] = [];

  before(async function () {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} not found: this test needs Debian's chromium package (as root: apt-get update && apt-get install -y chromium; .ci/run installs it when missing)`);
    }
    fs.mkdirSync(SCREENSHOTS, { recursive: true });
    red = await RedProcess.start();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    // The editor is self-contained; anything it asks of another host is refused here (this machine
    // has no network beyond package registries) and listed in the failure message if it matters.
    await page.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.hostname === '127.0.0.1' || url.protocol === 'data:') return route.continue();
      offHost.push(url.href);
      return route.abort();
    });
    await page.goto(`${red.url}/`);
    await page.locator('#red-ui-palette .red-ui-palette-node').first().waitFor({ state: 'visible', timeout: 60000 });
  });

  after(async function () {
    await browser?.close();
    await red?.stop();
  });

  afterEach(function () {
    assert.deepEqual(pageErrors, [], `the editor threw in the page: ${pageErrors.join(' | ')}`);
  });

  it(`shows the "${CATEGORY}" palette category with the ncs2-infer node`, async function () {
    const container = page.locator(`#red-ui-palette-container-${CATEGORY_ID}`);
    assert.equal(await container.count(), 1, `no palette category "${CATEGORY}"; categories: ${await page.locator('.red-ui-palette-header').allInnerTexts()}`);
    const node = container.locator(`.red-ui-palette-node[data-palette-type="${TYPES.infer}"]`);
    await node.waitFor({ state: 'attached' });
    assert.equal(await node.count(), 1);
  });

  it('registers the three node types: two config nodes and the infer node', async function () {
    const types = await page.evaluate((names) => names.map((t) => RED.nodes.getType(t)?.category ?? null), Object.values(TYPES));
    assert.deepEqual(types, ['config', 'config', CATEGORY]);
  });

  it('has help with Inputs, Outputs and Details for ncs2-infer', async function () {
    const help = await page.locator(`script[data-help-name="${TYPES.infer}"]`).evaluate((el) => el.textContent ?? '');
    for (const heading of ['Inputs', 'Outputs', 'Details']) assert.ok(help.includes(heading), `ncs2-infer help lacks "${heading}"`);
  });

  it('opens the ncs2-infer edit dialog after a drag from the palette and a double-click', async function () {
    const paletteNode = page.locator(`#red-ui-palette-container-${CATEGORY_ID} .red-ui-palette-node[data-palette-type="${TYPES.infer}"]`);
    await paletteNode.scrollIntoViewIfNeeded();
    const before = await page.locator('#red-ui-workspace-chart g.red-ui-flow-node').count();
    await paletteNode.dragTo(page.locator('#red-ui-workspace-chart'), { targetPosition: { x: 320, y: 200 } });
    const placed = page.locator('#red-ui-workspace-chart g.red-ui-flow-node');
    await page.waitForFunction((n) => document.querySelectorAll('#red-ui-workspace-chart g.red-ui-flow-node').length > n, before);
    await placed.last().locator('rect.red-ui-flow-node').dblclick();
    const tray = page.locator('.red-ui-tray').last();
    await tray.locator('#node-input-name').waitFor({ state: 'visible' });
    // A config-node property becomes a select of existing config nodes with edit and add buttons.
    assert.equal(await tray.locator('select#node-input-graph').count(), 1, 'graph selector missing');
    assert.equal(await tray.locator('#node-input-btn-graph-add').count(), 1, 'button to add a graph config missing');
    await tray.locator('#node-dialog-ok').waitFor({ state: 'visible' });
    await settled(page, '.red-ui-tray');
    await page.screenshot({ path: path.join(SCREENSHOTS, 'ncs2-infer-dialog.png') });
  });

  it('opens the ncs2-graph and ncs2-device dialogs from it', async function () {
    await page.locator('#node-input-btn-graph-add').click();
    const graphTray = page.locator('.red-ui-tray').last();
    for (const field of ['model', 'preset', 'topK', 'labels', 'device']) {
      await graphTray.locator(`#node-config-input-${field}`).waitFor({ state: 'attached' });
    }
    assert.equal(await graphTray.locator('select#node-config-input-device').count(), 1, 'device selector missing in the graph dialog');
    await settled(page, '.red-ui-tray');
    await page.screenshot({ path: path.join(SCREENSHOTS, 'ncs2-graph-dialog.png') });
    await page.locator('#node-config-input-btn-device-add').click();
    const deviceTray = page.locator('.red-ui-tray').last();
    for (const field of ['members-container', 'queueCapacity', 'queuePolicy']) {
      await deviceTray.locator(`#node-config-input-${field}`).waitFor({ state: 'attached' });
    }
    // The pool's members: a new device config starts as one cpu member; add a row of two simulated
    // sticks, remove the cpu row, and the saved config holds what the rows show.
    const rows = deviceTray.locator('#node-config-input-members-container li');
    assert.equal(await rows.count(), 1);
    assert.equal(await rows.first().locator('select.ncs2-member-kind').inputValue(), 'cpu');
    await deviceTray.locator('.red-ui-editableList-addButton').click();
    await rows.nth(1).locator('select.ncs2-member-kind').selectOption('sim-ncs2');
    await rows.nth(1).locator('input[data-field="count"]').fill('2');
    await rows.first().locator('.red-ui-editableList-item-remove').click();
    await page.waitForFunction(() => document.querySelectorAll('#node-config-input-members-container li').length === 1);
    await settled(page, '.red-ui-tray');
    await page.screenshot({ path: path.join(SCREENSHOTS, 'ncs2-device-pool-dialog.png') });
    await deviceTray.locator('#node-config-dialog-ok').click();
    const saved = await page.waitForFunction(() => {
      let members: unknown;
      RED.nodes.eachConfig((n) => {
        if (n.type === 'ncs2-device') members = n.members;
      });
      return Array.isArray(members) && members;
    });
    assert.deepEqual(await saved.jsonValue(), [{ kind: 'sim-ncs2', count: '2', usb: '3', maxInFlight: '' }]);
    // Closing the other dialogs with Cancel must leave no error behind (checked in afterEach).
    for (let i = 0; i < 2; i++) await page.locator('.red-ui-tray').last().locator('button', { hasText: 'Cancel' }).click();
    await page.locator('.red-ui-tray').waitFor({ state: 'detached' });
  });

  it('made no request to another host', function () {
    assert.deepEqual(offHost, []);
  });
});
