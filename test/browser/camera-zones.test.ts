/**
 * Drawing a zone over a camera frame in the ncs2-track dialog, in the real Node-RED editor
 * (headless Chromium): a deployed ncs2-camera reads an ffmpeg test video, the dialog loads its
 * newest frame from the admin API, three clicks and "add zone" write the zone into the text field.
 * Leaves test/browser/screenshots/ncs2-track-zone-drawing.png.
 */
import { strict as assert } from 'assert';
import * as path from 'path';
import type { Page } from 'playwright-core';
import { RedProcess, type FlowNode } from '../e2e/harness';
import { SCREENSHOTS, openWatchedPage, requireChromium, type WatchedPage } from './chromium';
import { makeTestVideo, tempDir } from '../camera/streams';

describe('ncs2-track dialog: zones drawn over a camera snapshot', function () {
  this.timeout(120000);
  let red: RedProcess | undefined;
  let watched: WatchedPage | undefined;
  let page: Page;

  before(async function () {
    requireChromium();
    const video = await makeTestVideo(path.join(tempDir(), 'testsrc.avi'), 30, 10);
    red = await RedProcess.start();
    const flows: FlowNode[] = [
      { id: 'zt', type: 'tab', label: 'zones' } as FlowNode,
      { id: 'zcam', type: 'ncs2-camera', z: 'zt', name: 'yard', url: video, input: 'file', fps: 5, loop: true, realtime: true, motion: false, x: 150, y: 100, wires: [['ztrack']] } as FlowNode,
      { id: 'ztrack', type: 'ncs2-track', z: 'zt', name: 'yard zones', zones: '', lines: '', x: 400, y: 100, wires: [[], []] } as FlowNode,
    ];
    const comms = await red.debugStream();
    try {
      await red.deploy(flows, comms);
    } finally {
      comms.close();
    }
    // wait for the camera's first frame on the admin API
    for (let i = 0; i < 100; i++) {
      if ((await fetch(`${red.url}/ncs2/cameras/zcam/snapshot`)).status === 200) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    watched = await openWatchedPage(`${red.url}/`, { width: 1280, height: 1000 });
    page = watched.page;
    await page.locator('#red-ui-palette .red-ui-palette-node').first().waitFor({ state: 'visible', timeout: 60000 });
    await page.locator('#red-ui-workspace-chart g.red-ui-flow-node', { hasText: 'yard zones' }).locator('rect.red-ui-flow-node').dblclick();
    await page.locator('#ncs2-track-camera').waitFor({ state: 'visible' });
  });

  after(async function () {
    await watched?.browser.close();
    await red?.stop();
  });

  it('loads the frame, and three clicks and "add zone" write the zone into the zones field', async function () {
    assert.equal(await page.locator('#ncs2-track-camera').inputValue(), 'zcam');
    await page.locator('#ncs2-track-load').click();
    const canvas = page.locator('#ncs2-track-canvas');
    await canvas.waitFor({ state: 'visible' });
    assert.deepEqual(await canvas.evaluate((c) => [(c as unknown as { width: number }).width, (c as unknown as { height: number }).height]), [320, 240]);
    const box = (await canvas.boundingBox())!;
    for (const [fx, fy] of [
      [0.5, 0.5],
      [0.9, 0.5],
      [0.9, 0.9],
    ]) {
      await page.mouse.click(box.x + fx * box.width, box.y + fy * box.height);
    }
    await page.locator('#ncs2-track-shape').fill('drive');
    await page.locator('#ncs2-track-add-zone').click();
    const zones = await page.locator('#node-input-zones').inputValue();
    const match = /^drive: ([\d.]+),([\d.]+) ([\d.]+),([\d.]+) ([\d.]+),([\d.]+)$/.exec(zones);
    assert.ok(match, `zones field: ${JSON.stringify(zones)}`);
    const numbers = match.slice(1).map(Number);
    [0.5, 0.5, 0.9, 0.5, 0.9, 0.9].forEach((want, i) => assert.ok(Math.abs(numbers[i] - want) < 0.01, `coordinate ${i}: ${numbers[i]}, clicked at ${want}`));
    await page.screenshot({ path: path.join(SCREENSHOTS, 'ncs2-track-zone-drawing.png') });
    assert.deepEqual(watched?.pageErrors, [], `the editor threw: ${watched?.pageErrors.join(' | ')}`);
  });
});
