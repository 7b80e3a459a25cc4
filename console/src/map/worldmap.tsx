// The world map: land from Natural Earth (npm world-atlas, bundled: no tile server) drawn
// once per size on one canvas, points on a second canvas, one path per class so 10,000
// probes draw in a few milliseconds. Classes differ in shape and lightness as well as
// hue, so the map reads in grey. The map is a picture: every view pairs it with a table.
import { geoNaturalEarth1, geoPath, type GeoProjection } from "d3-geo";
import { feature } from "topojson-client";
import type { Topology, GeometryCollection } from "topojson-specification";
import { useEffect, useRef, useState } from "preact/hooks";
import land110 from "world-atlas/land-110m.json";

export type Shape = "disc" | "ring" | "square" | "dot" | "cross";

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
  anchor: { label: "Anchor", shape: "square", color: "#1e3a8a" },
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
 * A world map of `points`. `onPick` gets the id of the point nearest a click (within 10 px).
 * `title` is the accessible name of the picture; the view shows the same data as a table.
 */
export function WorldMap(props: { points: MapPoint[]; onPick?: (id: MapPoint["id"]) => void; title: string; height?: number }) {
  const box = useRef<HTMLDivElement>(null);
  const landCanvas = useRef<HTMLCanvasElement>(null);
  const pointCanvas = useRef<HTMLCanvasElement>(null);
  const [width, setWidth] = useState(0);
  const [hover, setHover] = useState<{ x: number; y: number; label: string } | null>(null);
  const projected = useRef<{ xy: Float32Array; projection: GeoProjection } | null>(null);
  const height = props.height ?? Math.round(width * 0.52);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    setWidth(el.clientWidth);
    const ro = new ResizeObserver(() => setWidth(el.clientWidth));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  useEffect(() => {
    if (!width || !landCanvas.current || !pointCanvas.current) return;
    const projection = geoNaturalEarth1().fitSize([width, height], { type: "Sphere" });
    const land = sized(landCanvas.current, width, height);
    if (land) drawLand(land, projection, width, height);
    sized(pointCanvas.current, width, height);
    projected.current = { xy: new Float32Array(0), projection };
  }, [width, height]);

  useEffect(() => {
    const canvas = pointCanvas.current;
    const proj = projected.current?.projection;
    if (!width || !canvas || !proj) return;
    const xy = new Float32Array(props.points.length * 2);
    props.points.forEach((p, i) => {
      const q = Number.isFinite(p.lat) && Number.isFinite(p.lon) ? proj([p.lon, p.lat]) : null;
      xy[2 * i] = q ? q[0] : NaN;
      xy[2 * i + 1] = q ? q[1] : NaN;
    });
    projected.current = { xy, projection: proj };
    const ctx = canvas.getContext("2d");
    if (ctx) drawPoints(ctx, xy, props.points, width, height);
    canvas.dataset.drawn = String(props.points.length);
  }, [props.points, width, height]);

  const nearest = (e: MouseEvent): MapPoint | null => {
    const xy = projected.current?.xy;
    const canvas = pointCanvas.current;
    if (!xy || !canvas) return null;
    const rect = canvas.getBoundingClientRect();
    const x = e.clientX - rect.left;
    const y = e.clientY - rect.top;
    let best = -1;
    let bestD = 100;
    for (let i = 0; i < props.points.length; i++) {
      const dx = xy[2 * i] - x;
      const dy = xy[2 * i + 1] - y;
      const d = dx * dx + dy * dy;
      if (d < bestD) {
        bestD = d;
        best = i;
      }
    }
    return best >= 0 ? props.points[best] : null;
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
            setHover(p && rect ? { x: e.clientX - rect.left, y: e.clientY - rect.top, label: p.label } : null);
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
      <Legend classes={[...new Set(props.points.map((p) => p.cls))]} />
    </figure>
  );
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
