// The world map: land from Natural Earth (npm world-atlas, bundled: no tile server) drawn
// once per size on one canvas, points on a second canvas, one path per class so 10,000
// probes draw in a few milliseconds. Classes differ in shape and lightness as well as
// hue, so the map reads in grey. The map is a picture: every view pairs it with a table.
// Projected positions are cached per point object (a view that filters keeps its point
// objects, so a filter change draws without projecting again).
import { geoNaturalEarth1, geoPath, type GeoProjection } from "d3-geo";
import { feature } from "topojson-client";
import type { Topology, GeometryCollection } from "topojson-specification";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import land110 from "world-atlas/land-110m.json";
import "./worldmap.css";

export type Shape = "disc" | "ring" | "square" | "box" | "dot" | "cross";

export interface PointClass {
  label: string;
  shape: Shape;
  color: string;
}

/** Point classes: status of probes, and the locate view's candidates. */
export const CLASSES: Record<string, PointClass> = {
  connected: { label: "Connected", shape: "disc", color: "#17622b" },
  disconnected: { label: "Disconnected", shape: "ring", color: "#c2410c" },
  never: { label: "Never connected", shape: "dot", color: "#8a8f98" },
  abandoned: { label: "Abandoned (disabled)", shape: "cross", color: "#4b5563" },
  anchor: { label: "Anchor (connected)", shape: "square", color: "#1e3a8a" },
  "anchor-off": { label: "Anchor (not connected)", shape: "box", color: "#1e3a8a" },
  candidate: { label: "Candidate city", shape: "ring", color: "#1d4ed8" },
  best: { label: "Best city", shape: "disc", color: "#b91c1c" },
  site: { label: "Anycast site", shape: "square", color: "#7c2d12" },
  chosen: { label: "Chosen probe", shape: "disc", color: "#17622b" },
};

export interface MapPoint {
  id: number | string;
  lat: number;
  lon: number;
  cls: keyof typeof CLASSES | string;
  /** Radius in CSS pixels (default 3). */
  r?: number;
  label: string;
}

const topo = land110 as unknown as Topology<{ land: GeometryCollection }>;
const LAND = feature(topo, topo.objects.land);

function sized(canvas: HTMLCanvasElement, w: number, h: number): CanvasRenderingContext2D | null {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h}px`;
  const ctx = canvas.getContext("2d");
  ctx?.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

function drawLand(ctx: CanvasRenderingContext2D, projection: GeoProjection, w: number, h: number): void {
  ctx.clearRect(0, 0, w, h);
  const path = geoPath(projection, ctx);
  ctx.beginPath();
  path({ type: "Sphere" });
  ctx.fillStyle = getComputedStyle(ctx.canvas).getPropertyValue("--sea").trim() || "#eef3f8";
  ctx.fill();
  ctx.beginPath();
  path(LAND);
  ctx.fillStyle = getComputedStyle(ctx.canvas).getPropertyValue("--land").trim() || "#d6dbe1";
  ctx.fill();
}

/** Draw every point, grouped by class (one path and one fill/stroke per class). */
function drawPoints(ctx: CanvasRenderingContext2D, xy: Float32Array, points: MapPoint[], w: number, h: number): void {
  ctx.clearRect(0, 0, w, h);
  const byClass = new Map<string, number[]>();
  points.forEach((p, i) => {
    if (Number.isNaN(xy[2 * i])) return;
    const list = byClass.get(p.cls) ?? [];
    list.push(i);
    byClass.set(p.cls, list);
  });
  for (const [cls, idx] of byClass) {
    const style = CLASSES[cls] ?? CLASSES.connected;
    ctx.beginPath();
    for (const i of idx) {
      const x = xy[2 * i];
      const y = xy[2 * i + 1];
      const r = points[i].r ?? 3;
      switch (style.shape) {
        case "disc":
        case "ring":
          ctx.moveTo(x + r, y);
          ctx.arc(x, y, r, 0, 2 * Math.PI);
          break;
        case "dot":
          ctx.moveTo(x + r * 0.6, y);
          ctx.arc(x, y, r * 0.6, 0, 2 * Math.PI);
          break;
        case "square":
        case "box":
          ctx.rect(x - r, y - r, 2 * r, 2 * r);
          break;
        case "cross":
          ctx.moveTo(x - r, y - r);
          ctx.lineTo(x + r, y + r);
          ctx.moveTo(x + r, y - r);
          ctx.lineTo(x - r, y + r);
          break;
      }
    }
    if (style.shape === "disc" || style.shape === "dot" || style.shape === "square") {
      ctx.fillStyle = style.color;
      ctx.globalAlpha = cls === "candidate" ? 0.35 : 0.9;
      ctx.fill();
      ctx.globalAlpha = 1;
    } else {
      ctx.strokeStyle = style.color;
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
  }
}

/**
 * The box to zoom to for `points` ([[west, south], [east, north]] in degrees): their
 * extent, widened to at least `minSpan` degrees of longitude (and 0.6 × that of
 * latitude) around its centre; null without a located point.
 */
export function fitBox(points: MapPoint[], minSpan = 30): [[number, number], [number, number]] | null {
  let [w, s, e, n] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const p of points) {
    if (!Number.isFinite(p.lat) || !Number.isFinite(p.lon)) continue;
    w = Math.min(w, p.lon);
    e = Math.max(e, p.lon);
    s = Math.min(s, p.lat);
    n = Math.max(n, p.lat);
  }
  if (w > e) return null;
  const widen = (lo: number, hi: number, span: number, min: number, max: number): [number, number] => {
    if (hi - lo >= span) return [lo, hi];
    const c = (lo + hi) / 2;
    return [Math.max(min, c - span / 2), Math.min(max, c + span / 2)];
  };
  [w, e] = widen(w, e, minSpan, -180, 180);
  [s, n] = widen(s, n, minSpan * 0.6, -85, 85);
  return [
    [w, s],
    [e, n],
  ];
}

/** Screen positions of points for one projection, cached per point object. */
class Positions {
  private cache = new WeakMap<MapPoint, [number, number] | null>();
  constructor(readonly projection: GeoProjection) {}
  /** Fill `xy` (2 floats per point; NaN for a point without a position). */
  project(points: MapPoint[]): Float32Array {
    const xy = new Float32Array(points.length * 2);
    for (let i = 0; i < points.length; i++) {
      const p = points[i];
      let q = this.cache.get(p);
      if (q === undefined) {
        q = Number.isFinite(p.lat) && Number.isFinite(p.lon) ? (this.projection([p.lon, p.lat]) ?? null) : null;
        this.cache.set(p, q);
      }
      xy[2 * i] = q ? q[0] : NaN;
      xy[2 * i + 1] = q ? q[1] : NaN;
    }
    return xy;
  }
}

/**
 * A world map of `points`. `onPick` gets the id of the point nearest a click (within 10 px).
 * `title` is the accessible name of the picture; the view shows the same data as a table.
 * `onDrawn` is called with the number of points after each drawing (views set
 * performance marks there). The point canvas carries `data-drawn` (points drawn) and
 * `data-seq` (drawings so far) for tests and benches.
 */
export function WorldMap(props: {
  points: MapPoint[];
  onPick?: (id: MapPoint["id"]) => void;
  title: string;
  height?: number;
  /** Cap on the height when it follows the width (the map is then centred). */
  maxHeight?: number;
  /** Zoom to the points (at least `fit` degrees of longitude wide) instead of the whole world. */
  fit?: number;
  onDrawn?: (n: number) => void;
}) {
  const box = useRef<HTMLDivElement>(null);
  const landCanvas = useRef<HTMLCanvasElement>(null);
  const pointCanvas = useRef<HTMLCanvasElement>(null);
  const [width, setWidth] = useState(0);
  const [hover, setHover] = useState<{ x: number; y: number; label: string } | null>(null);
  const positions = useRef<Positions | null>(null);
  const xyRef = useRef<{ xy: Float32Array; points: MapPoint[] } | null>(null);
  const seq = useRef(0);
  const height = props.height ?? Math.min(Math.round(width * 0.52), props.maxHeight ?? Infinity);
  const box2 = props.fit ? fitBox(props.points, props.fit) : null;
  const boxKey = box2 ? box2.flat().join(",") : "";

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    setWidth(el.clientWidth);
    const ro = new ResizeObserver(() => setWidth(el.clientWidth));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  // Layout effects: land and points are drawn in the same frame as the rest of the update.
  useLayoutEffect(() => {
    if (!width || !landCanvas.current || !pointCanvas.current) return;
    const pad = 16;
    const projection = box2
      ? geoNaturalEarth1().fitExtent(
          [
            [pad, pad],
            [width - pad, height - pad],
          ],
          { type: "MultiPoint", coordinates: [box2[0], box2[1], [box2[0][0], box2[1][1]], [box2[1][0], box2[0][1]]] },
        )
      : geoNaturalEarth1().fitSize([width, height], { type: "Sphere" });
    const land = sized(landCanvas.current, width, height);
    if (land) drawLand(land, projection, width, height);
    sized(pointCanvas.current, width, height);
    positions.current = new Positions(projection);
  }, [width, height, boxKey]);

  useLayoutEffect(() => {
    const canvas = pointCanvas.current;
    const pos = positions.current;
    if (!width || !canvas || !pos) return;
    const xy = pos.project(props.points);
    xyRef.current = { xy, points: props.points };
    const ctx = canvas.getContext("2d");
    if (ctx) drawPoints(ctx, xy, props.points, width, height);
    seq.current++;
    canvas.dataset.drawn = String(props.points.length);
    canvas.dataset.seq = String(seq.current);
    props.onDrawn?.(props.points.length);
  }, [props.points, width, height]);

  const nearest = (e: MouseEvent): MapPoint | null => {
    const cur = xyRef.current;
    const canvas = pointCanvas.current;
    if (!cur || !canvas) return null;
    const { xy, points } = cur;
    const rect = canvas.getBoundingClientRect();
    const x = e.clientX - rect.left;
    const y = e.clientY - rect.top;
    let best = -1;
    let bestD = 100;
    for (let i = 0; i < points.length; i++) {
      const dx = xy[2 * i] - x;
      const dy = xy[2 * i + 1] - y;
      const d = dx * dx + dy * dy;
      if (d < bestD) {
        bestD = d;
        best = i;
      }
    }
    return best >= 0 ? points[best] : null;
  };

  return (
    <figure class="worldmap" ref={box}>
      <div class="map-stack" style={{ height: `${height}px` }}>
        <canvas ref={landCanvas} aria-hidden="true" />
        <canvas
          ref={pointCanvas}
          role="img"
          aria-label={props.title}
          data-testid="map-points"
          onClick={(e) => {
            const p = nearest(e);
            if (p && props.onPick) props.onPick(p.id);
          }}
          onMouseMove={(e) => {
            const p = nearest(e);
            const rect = pointCanvas.current?.getBoundingClientRect();
            const next = p && rect ? { x: e.clientX - rect.left, y: e.clientY - rect.top, label: p.label } : null;
            setHover((h) => (h === null && next === null ? h : next));
          }}
          onMouseLeave={() => setHover(null)}
          style={{ cursor: props.onPick ? "pointer" : "default" }}
        />
        {hover ? (
          <div class="map-tip" style={{ left: `${hover.x + 12}px`, top: `${hover.y + 12}px` }}>
            {hover.label}
          </div>
        ) : null}
      </div>
      <Legend classes={legendOf(props.points)} />
    </figure>
  );
}

const ORDER = Object.keys(CLASSES);
/** The classes of `points`, in the order of `CLASSES`. */
function legendOf(points: MapPoint[]): string[] {
  const seen = new Set<string>();
  for (const p of points) seen.add(p.cls);
  return [...seen].sort((a, b) => ORDER.indexOf(a) - ORDER.indexOf(b));
}

/** The classes shown, as text with their shape. */
export function Legend(props: { classes: string[] }) {
  return (
    <figcaption class="legend">
      {props.classes.map((c) => {
        const s = CLASSES[c];
        return s ? (
          <span class={`key key-${s.shape}`} style={{ "--key": s.color }}>
            {s.label}
          </span>
        ) : null;
      })}
      <span class="credit">Base map: Natural Earth (public domain)</span>
    </figcaption>
  );
}
