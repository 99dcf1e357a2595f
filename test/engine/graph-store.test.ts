import { strict as assert } from 'assert';
import type { LoadRequest } from '../../src/engine/devices/device';
import { ModelLoadError } from '../../src/engine/errors';
import { buildMlp } from '../../src/engine/graph/builder';
import { engineParts } from './engine-parts';
import { FakeDevice } from './fake-device';

const modelA = buildMlp({ inputSize: 4, hidden: [8], outputSize: 1, seed: 21 });
const modelB = buildMlp({ inputSize: 4, hidden: [8], outputSize: 1, seed: 22 });

/** A fake device that counts its loads and unloads. */
class CountingDevice extends FakeDevice {
  loads: string[] = [];
  unloads: string[] = [];
  override load(request: LoadRequest) {
    this.loads.push(request.key);
    return super.load(request);
  }
  override async unload(key?: string): Promise<void> {
    this.unloads.push(String(key));
  }
}

describe('graph store', function () {
  it('dedupes loads of the same content and options, also while the first is loading', async function () {
    const device = new CountingDevice({ id: 'a' });
    const { store } = engineParts([device]);
    const [first, second] = await Promise.all([store.load(modelA, {}), store.load(modelA, {})]);
    const third = await store.load(Uint8Array.from(modelA), { name: 'again' });
    assert.equal(first, second);
    assert.equal(first, third);
    assert.equal(first.refs, 3, 'the concurrent load joined the pending one; each load holds a reference');
    assert.equal(device.loads.length, 1);
    assert.equal(store.cache.stats().hits, 2, 'each reuse is a cache hit');
    const other = await store.load(modelA, { session: { graphOptimizationLevel: 'basic' } });
    assert.notEqual(other.id, first.id, 'other session options are another compiled graph');
    assert.equal(device.loads.length, 2);
    assert.equal(store.size, 2);
  });

  it('bounds compiled graphs: an idle graph pushed out of the cache is unloaded and forgotten', async function () {
    const device = new CountingDevice({ id: 'a' });
    const { store, freed } = engineParts([device], { maxCachedGraphs: 1, idleGraphMs: 60_000 });
    const a = await store.load(modelA, {});
    await store.release(a.id, {});
    assert.equal(store.get(a.id), a, 'released but idle: kept for a redeploy');
    const b = await store.load(modelB, {});
    assert.equal(store.get(a.id), undefined);
    assert.deepEqual(freed, [a.id]);
    assert.deepEqual(device.unloads, [store.cacheKey(a, 'a')]);
    assert.equal(store.cache.stats().evictions, 1);
    assert.ok(b.load.loaded.has('a'));
  });

  it('never evicts a graph someone holds: the capacity bounds idle graphs, and a release trims back to it', async function () {
    const device = new CountingDevice({ id: 'a' });
    const { store, freed } = engineParts([device], { maxCachedGraphs: 1, idleGraphMs: 60_000 });
    const models = [21, 22, 23].map((seed) => buildMlp({ inputSize: 4, hidden: [8], outputSize: 1, seed: seed + 100 }));
    const held = [];
    for (const m of models) held.push(await store.load(m, {}));
    assert.deepEqual(device.unloads, [], 'three held graphs over a capacity of one: none unloaded');
    assert.ok(held.every((g) => store.get(g.id) === g && g.load.loaded.has('a')));
    await store.release(held[0].id, {});
    assert.deepEqual(freed, [held[0].id], 'the released graph is the one pushed out');
    assert.ok(store.get(held[1].id) && store.get(held[2].id), 'the held ones stay');
    await store.release(held[1].id, {});
    await store.release(held[2].id, {});
    assert.deepEqual(freed, [held[0].id, held[1].id], 'back to the capacity: the most recent idle graph stays cached');
  });

  it('frees a released graph at once with free, after its queue drains', async function () {
    const { store, freed } = engineParts([new FakeDevice({ id: 'a' })]);
    const g = await store.load(modelA, {});
    g.queue.inFlight = 1;
    const released = store.release(g.id, { free: true });
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(store.get(g.id), g, 'a task still runs');
    g.queue.inFlight = 0;
    g.queue.checkDrained();
    await released;
    assert.equal(store.get(g.id), undefined);
    assert.deepEqual(freed, [g.id]);
    assert.equal(store.cache.stats().size, 0);
  });

  it('places a graph only on its devices, and loads it onto a placed device added later', async function () {
    const a = new CountingDevice({ id: 'a' });
    const { store, registry } = engineParts([a]);
    await assert.rejects(store.load(modelA, { devices: ['b'] }), /none of the devices b chosen for .* is registered; registered: a/);
    const b = new CountingDevice({ id: 'b' });
    registry.add(b);
    const g = await store.load(modelA, { devices: ['b'] });
    assert.deepEqual([...g.load.loaded.keys()], ['b']);
    const c = new CountingDevice({ id: 'c' });
    registry.add(c);
    store.deviceAdded(c);
    assert.equal(c.loads.length, 0, 'c is not in the placement');
    assert.equal(a.loads.length, 0);
  });

  it('records per-device load failures, and fails the load when no device could load it', async function () {
    const { store, warnings } = engineParts([new FakeDevice({ id: 'good' }), new FakeDevice({ id: 'bad', failLoad: true })]);
    const g = await store.load(modelA, {});
    assert.deepEqual([...g.load.loaded.keys()], ['good']);
    assert.deepEqual(Object.fromEntries(g.load.errors), { bad: 'fake load failure on bad' });
    assert.ok(warnings.some((w) => w instanceof ModelLoadError && /could not be loaded on bad/.test(w.message)));
    const none = engineParts([new FakeDevice({ id: 'bad', failLoad: true })]);
    await assert.rejects(none.store.load(modelA, {}), /cannot load model from \d+ bytes on any device \(bad: fake load failure on bad\)/);
  });

  it('forgets a device: its sessions and cache entries go from every graph', async function () {
    const { store } = engineParts([new FakeDevice({ id: 'a' }), new FakeDevice({ id: 'b' })]);
    const g = await store.load(modelA, {});
    assert.equal(store.cache.stats().size, 2);
    store.forgetDevice('a');
    assert.deepEqual([...g.load.loaded.keys()], ['b']);
    assert.equal(store.cache.stats().size, 1);
    assert.equal(store.queuedFor('a'), 0);
  });
});
