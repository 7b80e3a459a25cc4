// Shared pieces of the views: an accessible sortable table (the text alternative of every
// map and chart), form fields with their error, the banner, the not-found page, formats.
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { ApiError, useApiDown } from "./api";
import { onLinkClick } from "./router";

export function Link(props: { href: string; children: ComponentChildren; class?: string; "data-testid"?: string }) {
  return (
    <a href={props.href} class={props.class} data-testid={props["data-testid"]} onClick={(e) => onLinkClick(e, props.href)}>
      {props.children}
    </a>
  );
}

export interface Column<R> {
  key: string;
  label: string;
  /** Cell content (text is escaped by Preact). */
  render?: (row: R) => ComponentChildren;
  /** Sort value; the column is sortable when given. */
  sort?: (row: R) => number | string;
  numeric?: boolean;
}

/** A table with a caption; sortable columns are buttons in their header (keyboard-reachable). */
export function Table<R>(props: {
  caption: string;
  columns: Column<R>[];
  rows: R[];
  rowKey: (row: R) => string | number;
  limit?: number;
  testid?: string;
  empty?: string;
}) {
  const [sort, setSort] = useState<{ key: string; desc: boolean } | null>(null);
  let rows = props.rows;
  const col = sort && props.columns.find((c) => c.key === sort.key);
  if (col?.sort) {
    const f = col.sort;
    rows = [...rows].sort((a, b) => {
      const x = f(a);
      const y = f(b);
      const c = x < y ? -1 : x > y ? 1 : 0;
      return sort?.desc ? -c : c;
    });
  }
  const shown = props.limit ? rows.slice(0, props.limit) : rows;
  return (
    <div class="table-wrap">
      <table data-testid={props.testid}>
        <caption>
          {props.caption}
          {props.limit && rows.length > props.limit ? ` (first ${props.limit} of ${rows.length})` : ""}
        </caption>
        <thead>
          <tr>
            {props.columns.map((c) => (
              <th
                scope="col"
                class={c.numeric ? "num" : undefined}
                aria-sort={sort?.key === c.key ? (sort.desc ? "descending" : "ascending") : undefined}
              >
                {c.sort ? (
                  <button type="button" class="sort" onClick={() => setSort({ key: c.key, desc: sort?.key === c.key ? !sort.desc : false })}>
                    {c.label}
                  </button>
                ) : (
                  c.label
                )}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {shown.length === 0 ? (
            <tr>
              <td colSpan={props.columns.length} class="empty">
                {props.empty ?? "Nothing to show."}
              </td>
            </tr>
          ) : (
            shown.map((r) => (
              <tr key={props.rowKey(r)}>
                {props.columns.map((c) => (
                  <td class={c.numeric ? "num" : undefined}>{c.render ? c.render(r) : String((r as Record<string, unknown>)[c.key] ?? "")}</td>
                ))}
              </tr>
            ))
          )}
        </tbody>
      </table>
    </div>
  );
}

/** A labelled form control with its error (from the API's pointer) beside it. */
export function Field(props: { id: string; label: string; error?: string; hint?: string; children: ComponentChildren }) {
  return (
    <div class={props.error ? "field invalid" : "field"}>
      <label for={props.id}>{props.label}</label>
      {props.children}
      {props.hint && !props.error ? <small id={`${props.id}-hint`}>{props.hint}</small> : null}
      {props.error ? (
        <small class="error" id={`${props.id}-error`} role="alert" data-testid={`error-${props.id}`}>
          {props.error}
        </small>
      ) : null}
    </div>
  );
}

/** The API-unreachable banner, shown on every page while requests fail. */
export function DownBanner() {
  const down = useApiDown();
  if (!down) return null;
  return (
    <div class="banner" role="alert" data-testid="api-down">
      The vantage API cannot be reached. Retrying every few seconds…
    </div>
  );
}

/** An error answer in a view: what the API said. */
export function ErrorBox(props: { error: ApiError; what?: string }) {
  return (
    <div class="errorbox" role="alert" data-testid="error">
      {props.what ? `${props.what}: ` : ""}
      {props.error.detail}
    </div>
  );
}

/** The page for an unknown id or path: says what was not found and where to go. */
export function NotFound(props: { what: string; back: string; backLabel: string }) {
  return (
    <section data-view="notfound" data-ready="1">
      <h1>Not found</h1>
      <p data-testid="notfound">{props.what}</p>
      <p>
        <Link href={props.back}>{props.backLabel}</Link>
      </p>
    </section>
  );
}

/** Unix seconds as `2026-12-05 18:40:00 UTC`. */
export function fmtTime(unix: number | null | undefined): string {
  if (unix === null || unix === undefined || !Number.isFinite(unix)) return "—";
  return new Date(unix * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

/** Milliseconds with a sensible precision. */
export function fmtMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return "—";
  return ms >= 100 ? `${ms.toFixed(0)} ms` : ms >= 10 ? `${ms.toFixed(1)} ms` : `${ms.toFixed(2)} ms`;
}

export function Loading() {
  return <p class="loading" aria-live="polite">Loading…</p>;
}

export type Children = ComponentChildren;
