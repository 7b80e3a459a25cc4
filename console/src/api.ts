// The API client: JSON over fetch on the same origin, errors as `ApiError` (what the API
// said, and which field it named), and the "API unreachable" state behind the banner:
// `useApi` retries every few seconds while the API is down.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";

export class ApiError extends Error {
  /** HTTP status; 0 when the API could not be reached. */
  status: number;
  detail: string;
  /** The field or parameter the API named: a JSON pointer (`/definitions/0/packets`) or `?name`. */
  pointer?: string;
  constructor(status: number, detail: string, pointer?: string) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.pointer = pointer;
  }
  /** The API is away (network error or a gateway/unavailable answer): worth retrying. */
  get down(): boolean {
    return this.status === 0 || this.status === 502 || this.status === 504;
  }
}

// ---- API reachability (the banner) ------------------------------------------------------
let apiDown = false;
const downListeners = new Set<(down: boolean) => void>();
function setDown(down: boolean): void {
  if (down === apiDown) return;
  apiDown = down;
  downListeners.forEach((l) => l(down));
}
export function useApiDown(): boolean {
  const [down, set] = useState(apiDown);
  useEffect(() => {
    downListeners.add(set);
    return () => void downListeners.delete(set);
  }, []);
  return down;
}

/** Read an error answer in the RIPE Atlas shape `{"error": {detail, errors: [{source: {pointer}}]}}`. */
export function errorOf(status: number, body: unknown): ApiError {
  const e = (body as { error?: { detail?: string; title?: string; errors?: { source?: { pointer?: string }; detail?: string }[] } } | null)?.error;
  const detail = e?.detail ?? e?.title ?? (typeof body === "string" && body ? body : `HTTP ${status}`);
  return new ApiError(status, detail, e?.errors?.[0]?.source?.pointer);
}

async function request<T>(path: string, init: RequestInit): Promise<T> {
  let resp: Response;
  try {
    resp = await fetch(path, { ...init, headers: { Accept: "application/json", ...(init.headers ?? {}) } });
  } catch (err) {
    if ((err as Error).name === "AbortError") throw err;
    setDown(true);
    throw new ApiError(0, "the vantage API cannot be reached; retrying");
  }
  const text = await resp.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  if (!resp.ok) {
    const err = errorOf(resp.status, body);
    setDown(err.down);
    throw err;
  }
  setDown(false);
  return body as T;
}

export function getJSON<T>(path: string, signal?: AbortSignal): Promise<T> {
  return request<T>(path, { signal });
}

/** POST `body` as JSON with an API key (`Authorization: Key <key>`). */
export function postJSON<T>(path: string, body: unknown, key: string): Promise<T> {
  return request<T>(path, {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", Authorization: `Key ${key}` },
  });
}

export interface ApiState<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  reload: () => void;
}

/** Retry delay while the API is down. */
export const RETRY_MS = 3000;

/** GET `path` (null: nothing to fetch) and re-fetch when it changes; retry while the API is down. */
export function useApi<T>(path: string | null): ApiState<T> {
  const [state, setState] = useState<{ data?: T; error?: ApiError; loading: boolean }>({ loading: path !== null });
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => {
    if (path === null) {
      setState({ loading: false });
      return;
    }
    const ctl = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    getJSON<T>(path, ctl.signal).then(
      (data) => setState({ data, loading: false }),
      (error: unknown) => {
        if ((error as Error).name === "AbortError") return;
        const e = error instanceof ApiError ? error : new ApiError(0, String(error));
        setState((s) => ({ data: s.data, error: e, loading: false }));
        // Unreachable, or unavailable for now (ClickHouse or the engines away): try again.
        if (e.down || e.status === 503) timer.current = window.setTimeout(reload, RETRY_MS);
      },
    );
    return () => {
      ctl.abort();
      window.clearTimeout(timer.current);
    };
  }, [path, tick]);
  return { data: state.data, error: state.error, loading: state.loading, reload };
}
