import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import * as vm from 'vm';
import { FIELD_RULES, fieldError, readField, type NodeTypeName } from '../../nodes/lib/field-rules';
import { buildEditorScript, type EditorHelpers, type Query } from '../../nodes/lib/editor-script';
import { parseGraphSettings, parseThermalSettings } from '../../nodes/lib/settings';
import { ROOT } from './support';

/** The served editor script run over stand-in dialog inputs (id -> value), as the editor page runs it. */
function editorWith(inputs: Record<string, unknown>): EditorHelpers {
  const query = (selector: string): Query => {
    const id = selector.replace(/^#/, '');
    const present = id in inputs;
    const el: Query = {
      length: present ? 1 : 0,
      // Booleans stand for checkboxes; null for a select whose value is none of its options.
      is: (s: string) => (s === ':checkbox' ? typeof inputs[id] === 'boolean' : s === ':checked' ? inputs[id] === true : s === 'select' && inputs[id] === null),
      val: ((value?: unknown) => {
        if (value === undefined) return inputs[id];
        inputs[id] = value;
        return el;
      }) as Query['val'],
      prop: (_name: string, value: boolean) => {
        inputs[id] = value;
        return el;
      },
    };
    return el;
  };
  const window: { jQuery: typeof query; ncs2Editor?: EditorHelpers } = { jQuery: query };
  vm.runInNewContext(buildEditorScript(), { window });
  return window.ncs2Editor!;
}

describe('field rules shared by the runtime and the editor', function () {
  it('reads blank and missing values as the default, and names what a wrong value should be', function () {
    assert.deepEqual(readField(FIELD_RULES['ncs2-graph'].padValue, undefined), { value: 0 });
    assert.deepEqual(readField(FIELD_RULES['ncs2-graph'].scale, ' 1/255 '), { value: 1 / 255 });
    assert.match(readField(FIELD_RULES['ncs2-graph'].scale, 'xyz').error!, /scale must be a number \(or a fraction like 1\/255\) or blank, got "xyz"/);
    assert.match(readField(FIELD_RULES['ncs2-graph'].mean, 'foo').error!, /mean must be one number or one per channel/);
    assert.match(readField(FIELD_RULES['ncs2-graph'].std, '0.5, 0').error!, /none of them 0/);
    assert.match(readField(FIELD_RULES['ncs2-graph'].padValue, 256).error!, /pad value must be an integer from 0 to 255/);
    assert.match(fieldError('ncs2-thermal-guard', 'criticalC', { criticalC: -500 })!, /critical temperature must be a number from 0 to 150/);
    assert.match(fieldError('ncs2-thermal-guard', 'criticalC', { targetC: 90 })!, /critical temperature \(85 C\) must be above the target \(90 C\)/);
    assert.equal(fieldError('ncs2-thermal-guard', 'criticalC', {}), undefined);
  });

  it('the runtime refuses what the editor marks wrong, and reads missing fields as the editor shows them', function () {
    assert.throws(() => parseGraphSettings({ std: '0' }, undefined), /std must be one number or one per channel separated by commas, none of them 0 or blank, got "0"/);
    assert.throws(() => parseThermalSettings({ criticalC: '-500' }), /critical temperature must be a number from 0 to 150/);
    const graph = parseGraphSettings({}, undefined);
    assert.equal(graph.topK, 5);
    assert.equal(graph.preprocess.padValue, 0);
    assert.equal(graph.preprocess.invert, false);
  });

  it('every text field with a rule has a validator from the shared script and the same default in its dialog', function () {
    for (const type of Object.keys(FIELD_RULES) as NodeTypeName[]) {
      const html = fs.readFileSync(path.join(ROOT, 'nodes', `${type}.html`), 'utf8');
      assert.ok(html.includes('<script type="text/javascript" src="ncs2/editor.js"></script>'), `${type}.html loads the shared script`);
      assert.ok(!/\/\^\[1-9\]/.test(html), `${type}.html has no integer regex of its own`);
      for (const [field, rule] of Object.entries(FIELD_RULES[type])) {
        const line = new RegExp(`${field}: \\{ value: ([^,]+), validate: ncs2Editor\\.validator\\('${type}', '${field}'\\) \\}`).exec(html);
        assert.ok(line, `${type}.${field}: a validator from the shared rules`);
        const shown = line[1] === "''" ? undefined : Number(line[1]);
        if (rule.kind !== 'numbers' && rule.default !== undefined) assert.equal(shown, rule.default, `${type}.${field}: the dialog's default is the runtime's`);
      }
    }
  });

  it('the served script validates with the same rules, reading related fields from the open dialog', function () {
    const editor = editorWith({ 'node-input-targetC': '70' });
    const guard = { _def: { defaults: {} }, targetC: 70 };
    const critical = editor.validator('ncs2-thermal-guard', 'criticalC');
    assert.equal(critical.call(guard, '85'), true);
    assert.equal(critical.call(guard, undefined), true, 'a property missing from a saved flow is its default');
    assert.match(String(critical.call(guard, '60')), /must be above the target \(70 C\)/);
    assert.match(String(critical.call(guard, '-500')), /from 0 to 150/);
    const scale = editor.validator('ncs2-graph', 'scale');
    assert.match(String(scale.call({ _def: { category: 'config', defaults: {} } }, 'xyz')), /scale must be a number/);
    // device pool members: their own fields, and the device's where they share one
    assert.match(editor.memberFieldError('count', '17')!, /simulated sticks must be an integer from 1 to 16/);
    assert.match(editor.memberFieldError('workers', 'x')!, /workers must be an integer >= 1/);
    assert.equal(editor.memberFieldError('workers', ''), undefined);
    assert.equal(editor.memberFieldError('path', '1-1.2'), undefined, 'a field without a rule passes');
  });

  it('fills a property missing from a saved flow with its default, and a select left blank', function () {
    const inputs: Record<string, unknown> = { 'node-input-maxWaiting': '', 'node-input-policy': null, 'node-input-crop': false };
    const editor = editorWith(inputs);
    const defaults = { maxWaiting: { value: 256 }, policy: { value: 'device' }, crop: { value: true } };
    editor.fillDefaults({ _def: { defaults }, maxWaiting: undefined, policy: 'gone', crop: undefined });
    assert.deepEqual(inputs, { 'node-input-maxWaiting': 256, 'node-input-policy': 'device', 'node-input-crop': true });
  });
});
