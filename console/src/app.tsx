// The layout (skip link, navigation, the API banner, credits) and the route table.
import { useEffect, useRef } from "preact/hooks";
import { onLinkClick, useRoute, type Route } from "./router";
import { DownBanner, Link, NotFound } from "./ui";
import { ProbesView } from "./views/probes";
import { ProbeView } from "./views/probe";
import { MeasurementsView } from "./views/measurements";
import { MeasurementView } from "./views/measurement";
import { CreateView } from "./views/create";
import { LocateView } from "./views/locate";
import { CensorshipView } from "./views/censorship";

const NAV: [string, string, Route["name"][]][] = [
  ["/probes", "Probes", ["probes", "probe"]],
  ["/measurements", "Measurements", ["measurements", "measurement"]],
  ["/measurements/new", "New measurement", ["create"]],
  ["/locate", "Locate", ["locate"]],
  ["/censorship", "Censorship", ["censorship"]],
];

function View(props: { route: Route }) {
  const r = props.route;
  switch (r.name) {
    case "probes":
      return <ProbesView route={r} />;
    case "probe":
      return <ProbeView route={r} />;
    case "measurements":
      return <MeasurementsView route={r} />;
    case "measurement":
      return <MeasurementView route={r} />;
    case "create":
      return <CreateView route={r} />;
    case "locate":
      return <LocateView route={r} />;
    case "censorship":
      return <CensorshipView route={r} />;
    default:
      return <NotFound what={`There is no page at ${r.path}.`} back="/" backLabel="Go to the probe map" />;
  }
}

export function App() {
  const route = useRoute();
  const main = useRef<HTMLElement>(null);
  const first = useRef(true);
  // Move focus to the content after a navigation, as a page load would (screen readers).
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    main.current?.focus();
  }, [route.path]);
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href="/" class="brand">
          vantage
        </Link>
        <nav aria-label="Main">
          <ul>
            {NAV.map(([href, label, names]) => (
              <li>
                <a
                  href={href}
                  aria-current={names.includes(route.name) ? "page" : undefined}
                  onClick={(e) => onLinkClick(e, href)}
                >
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
      </header>
      <DownBanner />
      <main id="main" ref={main} tabIndex={-1}>
        <View route={route} />
      </main>
      <footer>
        Map data: <a href="https://www.naturalearthdata.com/">Natural Earth</a> (public domain). City data:{" "}
        <a href="https://www.geonames.org/">GeoNames</a> (CC BY 4.0). API: <a href="/api/openapi.json">OpenAPI document</a>.
      </footer>
    </>
  );
}
