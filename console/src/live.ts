// Live results of a measurement while its page is open: an EventSource on
// `/api/v2/measurements/{id}/stream/` (event `metadata` once subscribed, then `result`
// with one raw RIPE Atlas result each). The browser reconnects by itself after a drop.
import { useEffect, useRef, useState } from "preact/hooks";
import type { RawResult } from "./ripe";

export interface LiveState {
  /** "connecting" until the API confirmed the subscription; "down" while it is away. */
  status: "off" | "connecting" | "live" | "down";
  /** Results received live since the page opened. */
  count: number;
}

/** Cap of live results kept in memory (the tables show the newest per probe anyway). */
export const LIVE_KEEP = 2000;

/**
 * Subscribe to the live results of measurement `id` (null: none). `onResult` gets each
 * result; `onSubscribed` runs each time the subscription is (re)established, so a view
 * can re-read what it may have missed while it was connecting.
 */
export function useLive(id: string | null, onResult: (r: RawResult) => void, onSubscribed?: () => void): LiveState {
  const [state, setState] = useState<LiveState>({ status: id ? "connecting" : "off", count: 0 });
  const handlers = useRef({ onResult, onSubscribed });
  handlers.current = { onResult, onSubscribed };
  useEffect(() => {
    if (!id || typeof EventSource === "undefined") return;
    setState({ status: "connecting", count: 0 });
    const es = new EventSource(`/api/v2/measurements/${encodeURIComponent(id)}/stream/`);
    es.addEventListener("metadata", () => {
      setState((s) => ({ ...s, status: "live" }));
      handlers.current.onSubscribed?.();
    });
    es.addEventListener("result", (e) => {
      let r: unknown;
      try {
        r = JSON.parse((e as MessageEvent<string>).data);
      } catch {
        return; // not JSON: nothing to show
      }
      if (r === null || typeof r !== "object" || Array.isArray(r)) return;
      setState((s) => ({ status: "live", count: s.count + 1 }));
      handlers.current.onResult(r as RawResult);
    });
    es.onerror = () => setState((s) => ({ ...s, status: es.readyState === EventSource.CLOSED ? "down" : "connecting" }));
    return () => es.close();
  }, [id]);
  return state;
}
