/**
 * examples/detections-dashboard.json on FlowFuse Dashboard 2.0 in Debian's headless Chromium
 * (playwright-core): the example is deployed to a real Node-RED and its inject node sends a bundled
 * camera frame every 3 s through the digit detector with "annotate" on. The page
 * /dashboard/detections must show the annotated frame (a 320x240 JPEG with boxes drawn) and a
 * table row per detected digit, and /dashboard/meter the meter photo with the text PP-OCRv4 found
 * and its readings, without errors in the page. Leaves
 * test/browser/screenshots/detections-dashboard.png and detections-dashboard-meter.png. Without /usr/bin/chromium it fails and says
 * how to install it (never skips).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import type { Page } from 'playwright-core';
import { RedProcess, type FlowNode } from '../e2e/harness';
import { ROOT } from '../e2e/red-boot';
import { SCREENSHOTS, closeOfflineToast, openWatchedPage, requireChromium, type WatchedPage } from './chromium';

const EXAMPLE = path.join(ROOT, 'examples', 'detections-dashboard.json');
const widget = (id: string): string => `#nrdb-ui-widget-${id}`;

describe('detections dashboard example in headless Chromium', function () {
  this.timeout(120000);

  let red: RedProcess | undefined;
  let watched: WatchedPage | undefined;
  let page: Page;
  const flows = JSON.parse(fs.readFileSync(EXAMPLE, 'utf8')) as FlowNode[];
  const ofType = (type: string): FlowNode[] => flows.filter((n) => n.type === type);

  before(async function () {
    requireChromium();
    red = await RedProcess.start({ settings: { httpNodeRoot: '/' } });
    const comms = await red.debugStream();
    try {
      await red.deploy(flows, comms);
    } finally {
      comms.close();
    }
    watched = await openWatchedPage(`${red.url}/dashboard/detections`, { width: 1280, height: 800 });
    page = watched.page;
  });

  after(async function () {
    await watched?.browser.close();
    await red?.stop();
  });

  afterEach(function () {
    assert.deepEqual(watched?.pageErrors, [], `the dashboard threw in the page: ${watched?.pageErrors.join(' | ')}`);
  });

  it('shows the annotated frame: a 320x240 JPEG with the boxes drawn', async function () {
    const [template] = ofType('ui-template');
    const img = page.locator(`${widget(template.id)} img`);
    await img.waitFor({ state: 'visible', timeout: 60000 });
    // Runs in the page: the element is an HTMLImageElement (no DOM types in this Node project).
    const { src, width, height } = await img.evaluate((el) => { const i = el as unknown as { src: string; naturalWidth: number; naturalHeight: number }; return { src: i.src.slice(0, 30), width: i.naturalWidth, height: i.naturalHeight }; });
    assert.ok(src.startsWith('data:image/jpeg;base64,'), src);
    assert.deepEqual([width, height], [320, 240]);
  });

  it('fills the table with one row per detected digit and leaves a screenshot, with no request to another host', async function () {
    const [table] = ofType('ui-table');
    const rows = page.locator(`${widget(table.id)} tbody tr`);
    await rows.first().waitFor({ state: 'visible', timeout: 30000 });
    const cells = await rows.first().locator('td').allInnerTexts();
    assert.match(cells[0], /^[0-9]$/, `first row: ${JSON.stringify(cells)}`);
    assert.ok(Number(cells[1]) >= 0.5, `score in ${JSON.stringify(cells)}`);
    await closeOfflineToast(page);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'detections-dashboard.png'), type: 'png', fullPage: false });
    assert.deepEqual(watched!.offHost, [], `the dashboard asked other hosts for: ${watched!.offHost.join(', ')}`);
    assert.deepEqual(watched!.consoleErrors, [], `errors in the page console: ${watched!.consoleErrors.join(' | ')}`);
  });

  it('meter page: the meter photo with its text boxes drawn, and the readings in the table', async function () {
    const truth = JSON.parse(fs.readFileSync(path.join(ROOT, 'models', 'ocr-samples', 'ground-truth.json'), 'utf8')) as Record<string, string[]>;
    const known = new Set(Object.values(truth).flat());
    await page.goto(`${red!.url}/dashboard/meter`);
    const template = ofType('ui-template').find((n) => n.name === 'annotated meter photo')!;
    const img = page.locator(`${widget(template.id)} img`);
    await img.waitFor({ state: 'visible', timeout: 60000 });
    const size = await img.evaluate((el) => { const i = el as unknown as { naturalWidth: number; naturalHeight: number }; return [i.naturalWidth, i.naturalHeight]; });
    assert.deepEqual(size, [320, 240]);
    const table = ofType('ui-table').find((n) => n.label === 'readings')!;
    const rows = page.locator(`${widget(table.id)} tbody tr`);
    await rows.first().waitFor({ state: 'visible', timeout: 30000 });
    const texts = await rows.locator('td:first-child').allInnerTexts();
    assert.ok(texts.length >= 2 && texts.every((t) => known.has(t.trim())), `readings ${JSON.stringify(texts)}`);
    await closeOfflineToast(page);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'detections-dashboard-meter.png'), type: 'png', fullPage: false });
    assert.deepEqual(watched!.consoleErrors, [], `errors in the page console: ${watched!.consoleErrors.join(' | ')}`);
  });
});
