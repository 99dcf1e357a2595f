/**
 * The script every node's editor file loads first (`<script src="ncs2/editor.js">`; the editor
 * loads a node file's relative script sources from the admin API and waits for them before its
 * inline scripts run). It carries the compiled rule table of field-rules.ts unchanged, so the
 * dialogs validate with the runtime's own rules, plus the few helpers below. Each node file serves
 * it: a node set that is enabled always finds it (a missing script would stall the editor's load).
 */
import * as fs from 'fs';
import type * as FieldRules from './field-rules';
import type { NodeAPI } from './red';

export const EDITOR_SCRIPT_ROUTE = '/ncs2/editor.js';

interface ScriptResponse {
  set(header: string, value: string): ScriptResponse;
  send(body: string): void;
}

const served = new WeakSet<object>();
let script: string | undefined;

export function serveEditorScript(RED: NodeAPI): void {
  if (served.has(RED.httpAdmin)) return;
  served.add(RED.httpAdmin);
  // No permission check: a <script> element sends no bearer token, and the rules are no secret.
  RED.httpAdmin.get(EDITOR_SCRIPT_ROUTE, (_req, res) => {
    script ??= buildEditorScript();
    (res as unknown as ScriptResponse).set('Content-Type', 'application/javascript; charset=utf-8').send(script);
  });
}

/** The served text: field-rules.js as compiled (a CommonJS module without imports) and the helpers, as `window.ncs2Editor`. */
export function buildEditorScript(): string {
  const rules = fs.readFileSync(require.resolve('./field-rules'), 'utf8').replace(/^\/\/# sourceMappingURL=.*$/m, '');
  return `(function () {\nvar exports = {};\n${rules}\nwindow.ncs2Editor = (${editorHelpers.toString()})(exports, window.jQuery);\n})();\n`;
}

/** The part of jQuery the helpers use. */
export interface Query {
  length: number;
  is(selector: string): boolean;
  val(): unknown;
  val(value: unknown): Query;
  prop(name: string, value: boolean): Query;
}

/** A node as the editor holds it: its properties and its type's definition. */
export interface EditorNode {
  _def: { category?: string; defaults: Record<string, { value?: unknown }> };
  [property: string]: unknown;
}

export interface EditorHelpers {
  validator(type: FieldRules.NodeTypeName, field: string): (this: EditorNode, value: unknown, opt?: unknown) => true | string;
  fillDefaults(node: EditorNode): void;
  /** What is wrong with a device pool member's field, or undefined (fields without a rule pass). */
  memberFieldError(field: string, value: unknown): string | undefined;
}

/**
 * Runs in the editor page, serialized into the script: it must use nothing but its arguments.
 * Exported for the unit test, which runs it over a stand-in for jQuery.
 */
export function editorHelpers(rules: typeof FieldRules, $: (selector: string) => Query): EditorHelpers {
  /** A field's input in the open dialog: config nodes and flow nodes use different id prefixes (and both may be open, stacked). */
  function input(node: EditorNode, field: string): Query {
    return $((node._def.category === 'config' ? '#node-config-input-' : '#node-input-') + field);
  }
  function inputValue(el: Query): unknown {
    return el.is(':checkbox') ? el.is(':checked') : el.val();
  }
  return {
    // A validator with two parameters may return a message, which the editor shows on the field.
    validator(type, field) {
      const relations = rules.RELATION_RULES[type].filter((r) => r.field === field);
      return function (this: EditorNode, value: unknown, _opt?: unknown): true | string {
        const values: Record<string, unknown> = {};
        // Other fields come from the dialog while it is open, else from the node as saved.
        relations.forEach((r) =>
          r.uses.forEach((name) => {
            const el = input(this, name);
            values[name] = el.length ? inputValue(el) : this[name];
          }),
        );
        values[field] = value;
        return rules.fieldError(type, field, values) ?? true;
      };
    },
    // A property missing from a saved flow (added after the flow was written) shows its default,
    // and a select never stays blank on a value it does not offer.
    fillDefaults(node) {
      Object.keys(node._def.defaults).forEach((field) => {
        const el = input(node, field);
        const fallback = node._def.defaults[field].value;
        if (!el.length || fallback === undefined) return;
        if (el.is(':checkbox')) {
          if (node[field] === undefined) el.prop('checked', fallback === true);
        } else if (node[field] === undefined || (el.is('select') && (el.val() === null || el.val() === undefined))) {
          el.val(fallback);
        }
      });
    },
    memberFieldError(field, value) {
      const rule = rules.memberRule(field);
      return rule ? rules.readField(rule, value).error : undefined;
    },
  };
}
