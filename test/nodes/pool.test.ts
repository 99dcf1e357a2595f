import { strict as assert } from 'assert';
import { ConfigError } from '../../src/engine';
import type { StickRecord } from '../../src/engine';
import { MEMBER_KINDS, parsePool, parsePoolSettings, poolDevices, poolLabel } from '../../nodes/lib/pool';

describe('device pools: parsing and migration', function () {
  it('a flow saved before pools (no members) reads its single-device fields as one member', function () {
    assert.deepEqual(parsePool({ kind: 'cpu', workers: '2', threadsPerWorker: 'auto', maxInFlight: '', usb: '3', queueCapacity: 256, queuePolicy: 'reject' }), {
      members: [{ kind: 'cpu', workers: 2 }],
    });
    assert.deepEqual(parsePool({ kind: 'sim-ncs2', usb: '2', maxInFlight: '4' }), { members: [{ kind: 'sim-ncs2', count: 1, usb: 2, maxInFlight: 4 }] });
    // The oldest flows had no kind at all: the CPU, as then.
    assert.deepEqual(parsePool({}), { members: [{ kind: 'cpu' }] });
  });

  it('the migrated member keeps the engine device id a single-device config had, so a redeploy after the upgrade reuses the device', function () {
    assert.deepEqual(
      poolDevices('dev', parsePool({ kind: 'cpu', workers: '1' })).map((d) => d.spec),
      [{ kind: 'cpu', id: 'cpu-dev', workers: 1 }],
    );
    assert.deepEqual(
      poolDevices('dev', parsePool({ kind: 'sim-ncs2' })).map((d) => d.spec),
      [{ kind: 'sim-ncs2', id: 'sim-ncs2-dev', usb: 3 }],
    );
  });

  it('members: each kind parses its own fields; ids derive from the config id and position, one per simulated stick', function () {
    const pool = parsePool({
      kind: 'cpu', // old fields are ignored once members exist
      workers: 'nonsense',
      members: [
        { kind: 'cpu', workers: '1', threadsPerWorker: '2' },
        { kind: 'sim-ncs2', count: '2', usb: '2' },
        { kind: 'usb', path: '1-1.4' },
        { kind: 'sim-ncs2', usb: 3 },
      ],
    });
    assert.deepEqual(pool.members, [
      { kind: 'cpu', workers: 1, threadsPerWorker: 2 },
      { kind: 'sim-ncs2', count: 2, usb: 2 },
      { kind: 'usb', path: '1-1.4' },
      { kind: 'sim-ncs2', count: 1, usb: 3 },
    ]);
    const devices = poolDevices('p1', pool);
    assert.deepEqual(
      devices.map((d) => [d.spec.id, d.position]),
      [
        ['cpu-p1', 1],
        ['sim-ncs2-p1-m2', 2],
        ['sim-ncs2-p1-m2.2', 2],
        ['sim-ncs2-p1-m4', 4],
      ],
    );
    assert.equal(poolLabel(pool), 'cpu + 2 sim-ncs2 + usb + sim-ncs2');
  });

  it('ids are stable when a member is unchanged and change when its kind does', function () {
    const a = poolDevices('p', parsePool({ members: [{ kind: 'cpu' }, { kind: 'sim-ncs2' }] })).map((d) => d.spec.id);
    const b = poolDevices('p', parsePool({ members: [{ kind: 'cpu', workers: '2' }, { kind: 'sim-ncs2' }] })).map((d) => d.spec.id);
    const c = poolDevices('p', parsePool({ members: [{ kind: 'cpu' }, { kind: 'cpu' }] })).map((d) => d.spec.id);
    assert.deepEqual(a, b);
    assert.deepEqual(c, ['cpu-p', 'cpu-p-m2']);
  });

  it('bad members get a ConfigError naming the member, the field, what is accepted and what arrived', function () {
    const cases: Array<[unknown, RegExp]> = [
      [[], /the pool has no members; add at least one device/],
      ['cpu', /members must be a list of devices, got "cpu"/],
      [[{ kind: 'gpu' }], /member 1: kind must be one of cpu, sim-ncs2, usb, got "gpu"/],
      [[{ kind: 'cpu' }, 7], /member 2 must be an object with a kind, got 7/],
      [[{ kind: 'cpu', workers: '0' }], /member 1 \(cpu\): workers must be an integer >= 1 or blank, got "0"/],
      [[{ kind: 'sim-ncs2', count: '0' }], /member 1 \(sim-ncs2\): simulated sticks must be an integer from 1 to 16 or blank, got "0"/],
      [[{ kind: 'sim-ncs2', count: '17' }], /simulated sticks must be an integer from 1 to 16 or blank, got "17"/],
      [[{ kind: 'sim-ncs2', usb: '4' }], /member 1 \(sim-ncs2\): USB generation must be one of 2, 3, got "4"/],
      [[{ kind: 'usb', path: '../x' }], /USB path must look like 1-1.4/],
    ];
    for (const [members, message] of cases) {
      assert.throws(
        () => parsePool({ members }),
        (err: Error) => err instanceof ConfigError && message.test(err.message),
        `${JSON.stringify(members)} -> ${String(message)}`,
      );
    }
  });

  it('pool settings carry the queue bound and policy beside the members', function () {
    assert.deepEqual(parsePoolSettings({ members: [{ kind: 'cpu' }], queueCapacity: '16', queuePolicy: 'drop-oldest' }), {
      members: [{ kind: 'cpu' }],
      queueCapacity: 16,
      queuePolicy: 'drop-oldest',
    });
    assert.throws(() => parsePoolSettings({ queuePolicy: 'fifo' }), /queue policy must be one of reject, drop-oldest, drop-newest/);
  });

  it('a usb member stands for no engine device (no runtime drives a real stick) and says why', function () {
    const stick = { path: '1-1.4', simulated: false, state: 'found, no NCS2 runtime installed' } as StickRecord;
    const simulated = { path: 'sim-3', simulated: true, state: 'simulated' } as StickRecord;
    const watching = { state: 'watching' } as const;
    const usb = MEMBER_KINDS.usb;
    assert.deepEqual(usb.devices({ kind: 'usb' }, 'usb-p'), []);
    assert.equal(usb.unavailable!({ kind: 'usb' }, () => ({ status: watching, sticks: [simulated] })), 'no NCS2 stick found on USB');
    assert.equal(
      usb.unavailable!({ kind: 'usb' }, () => ({ status: { state: 'no USB access', reason: 'this host cannot see USB devices' }, sticks: [] })),
      'no NCS2 stick found on USB (this host cannot see USB devices)',
    );
    assert.equal(usb.unavailable!({ kind: 'usb', path: '2-1' }, () => ({ status: watching, sticks: [stick] })), 'no NCS2 stick found at USB 2-1');
    assert.equal(usb.unavailable!({ kind: 'usb' }, () => ({ status: watching, sticks: [stick] })), 'USB 1-1.4: found, no NCS2 runtime installed; such sticks are listed but never scheduled');
    assert.equal(MEMBER_KINDS['sim-ncs2'].fp16Only, true);
    assert.equal(MEMBER_KINDS.cpu.fp16Only, false);
  });

  it('performance hints: latency fills blank fields with the fewest in flight and one CPU worker; numbers set on a member win; throughput leaves the engine its sizing', function () {
    const members = [{ kind: 'cpu' }, { kind: 'cpu', workers: '2', maxInFlight: '4' }, { kind: 'sim-ncs2', count: '2' }, { kind: 'usb' }];
    const latency = parsePoolSettings({ members, performance: 'latency' });
    assert.equal(latency.hint, 'latency');
    assert.deepEqual(latency.members, [
      { kind: 'cpu', workers: 1, maxInFlight: 1 },
      { kind: 'cpu', workers: 2, maxInFlight: 4 },
      { kind: 'sim-ncs2', count: 2, usb: 3, maxInFlight: 1 },
      { kind: 'usb' },
    ]);
    const throughput = parsePoolSettings({ members, performance: 'throughput' });
    assert.equal(throughput.hint, 'throughput');
    assert.deepEqual(throughput.members, parsePool({ members }).members);
    assert.equal(parsePoolSettings({ members, performance: '' }).hint, undefined);
    assert.throws(() => parsePoolSettings({ members, performance: 'fast' }), /performance hint must be blank, latency or throughput, got "fast"/);
  });
});
