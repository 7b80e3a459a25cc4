// Path routing with the History API: every page has a URL that can be shared, and the
// query string holds a view's filters (so a filtered view is a link too).
import { useEffect, useState } from "preact/hooks";

export type RouteName =
  | "probes"
  | "probe"
  | "measurements"
  | "create"
  | "measurement"
  | "locate"
  | "censorship"
  | "notfound";

export interface Route {
  name: RouteName;
  /** Path parameters (`id`). */
  params: Record<string, string>;
  query: URLSearchParams;
  path: string;
}

const TABLE: [RegExp, RouteName][] = [
  [/^\/$/, "probes"],
  [/^\/probes\/?$/, "probes"],
  [/^\/probes\/(?<id>[^/]+)\/?$/, "probe"],
  [/^\/measurements\/?$/, "measurements"],
  [/^\/measurements\/new\/?$/, "create"],
  [/^\/measurements\/(?<id>[^/]+)\/?$/, "measurement"],
  [/^\/locate\/?$/, "locate"],
  [/^\/censorship\/?$/, "censorship"],
];

/** The route of a path and query (pure). */
export function match(path: string, search = ""): Route {
  const query = new URLSearchParams(search);
  for (const [re, name] of TABLE) {
    const m = re.exec(path);
    if (m) {
      const params: Record<string, string> = {};
      for (const [k, v] of Object.entries(m.groups ?? {})) params[k] = decodeURIComponent(v);
      return { name, params, query, path };
    }
  }
  return { name: "notfound", params: {}, query, path };
}

const listeners = new Set<() => void>();
const notify = () => listeners.forEach((l) => l());
window.addEventListener("popstate", notify);

/** Go to `href` (a path with an optional query) without reloading the page. */
export function navigate(href: string, replace = false): void {
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  notify();
  if (!replace) window.scrollTo(0, 0);
}

/** Replace the current query string (filters), keeping the path; empty values are dropped. */
export function setQuery(values: Record<string, string | number | undefined | null>): void {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined || v === null || v === "") q.delete(k);
    else q.set(k, String(v));
  }
  const s = q.toString();
  navigate(location.pathname + (s ? `?${s}` : ""), true);
}

/** The current route; re-renders on navigation. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => match(location.pathname, location.search));
  useEffect(() => {
    const l = () => setRoute(match(location.pathname, location.search));
    listeners.add(l);
    return () => void listeners.delete(l);
  }, []);
  return route;
}

/** A link that navigates in the page (plain clicks) and stays a real link otherwise. */
export function onLinkClick(e: MouseEvent, href: string): void {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(href);
}
