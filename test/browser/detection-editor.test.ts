/**
 * The ncs2-graph dialog's preset fields in the real Node-RED editor (headless Chromium): each
 * preset shows its own fields, and choosing a text preset fills in PaddleOCR's preprocessing.
 * Leaves test/browser/screenshots/ncs2-graph-detection-dialog.png.
 */
import { strict as assert } from 'assert';
import * as path from 'path';
import type { Page } from 'playwright-core';
import type { RedProcess } from '../e2e/harness';
import { SCREENSHOTS, addInferAndNewGraph, openEditor, type WatchedPage } from './chromium';

describe('ncs2-graph dialog presets in the Node-RED editor', function () {
  this.timeout(120000);
  let red: RedProcess | undefined;
  let watched: WatchedPage | undefined;
  let page: Page;

  before(async function () {
    ({ red, watched } = await openEditor({ width: 1280, height: 1000 }));
    page = watched.page;
    await addInferAndNewGraph(page);
  });

  after(async function () {
    await watched?.browser.close();
    await red?.stop();
  });

  afterEach(function () {
    assert.deepEqual(watched?.pageErrors, [], `the editor threw: ${watched?.pageErrors.join(' | ')}`);
  });

  const shown = (field: string) => page.locator(`#node-config-input-${field}`).isVisible();

  it('shows the detection fields (and the YOLO variant, not the SSD box order) for the detection preset', async function () {
    assert.equal(await shown('topK'), true, 'classification is the default preset');
    assert.equal(await shown('scoreThreshold'), false);
    await page.locator('#node-config-input-preset').selectOption('detection');
    for (const f of ['detLayout', 'yoloVariant', 'scoreThreshold', 'iouThreshold', 'maxDetections', 'classFilter', 'labels', 'boxCoordinates']) assert.equal(await shown(f), true, f);
    for (const f of ['topK', 'softmax', 'boxOrder', 'charset', 'dbThreshold']) assert.equal(await shown(f), false, f);
    await page.locator('#node-config-input-detLayout').selectOption('ssd');
    assert.equal(await shown('boxOrder'), true);
    assert.equal(await shown('yoloVariant'), false);
    await page.locator('#node-config-input-detLayout').selectOption('yolo');
    await page.waitForTimeout(300);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'ncs2-graph-detection-dialog.png') });
  });

  it('fills in PaddleOCR preprocessing when a text preset is chosen', async function () {
    await page.locator('#node-config-input-preset').selectOption('text-recognition');
    assert.equal(await shown('charset'), true);
    assert.equal(await shown('scoreThreshold'), false);
    const values = await Promise.all(['resize', 'channelOrder', 'width', 'height', 'mean', 'std', 'padValue'].map((f) => page.locator(`#node-config-input-${f}`).inputValue()));
    assert.deepEqual(values, ['top-left', 'BGR', '320', '48', '0.5', '0.5', '128']);
    await page.locator('#node-config-input-preset').selectOption('text-detection');
    assert.equal(await shown('dbThreshold'), true);
    assert.equal(await page.locator('#node-config-input-mean').inputValue(), '0.485,0.456,0.406');
  });

  it('made no request to another host', function () {
    assert.deepEqual(watched?.offHost, []);
  });
});
