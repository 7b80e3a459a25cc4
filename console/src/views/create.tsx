// Create a measurement (`/measurements/new`): RIPE Atlas's form for ping, traceroute,
// dns, http, sslcert, ntp and vantage's mtr, with their defaults, the probe sources, and
// an API key. The API validates (the same checks as the operator); its errors are shown
// next to the field their JSON pointer names.
import { useState } from "preact/hooks";
import type { InputHTMLAttributes } from "preact";
import { ApiError, postJSON } from "../api";
import { navigate, type Route } from "../router";
import { Field } from "../ui";
import { TYPES, type MsmType } from "./results/common";
import { AREAS, KEY_STORAGE, SOURCE_TYPES, TYPE_FIELDS, DEFAULT_INTERVAL, controlOf, defaults, initialForm, requestBody, type FormState, type SourceForm } from "./create-form";
import "./measurements.css";

type Errors = Record<string, string>;

export function CreateView(_props: { route: Route }) {
  const [form, setForm] = useState<FormState>(() => initialForm());
  const [key, setKey] = useState(() => sessionStorage.getItem(KEY_STORAGE) ?? "");
  const [remember, setRemember] = useState(() => sessionStorage.getItem(KEY_STORAGE) !== null);
  const [errors, setErrors] = useState<Errors>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const set = (patch: Partial<FormState>) => setForm((f) => ({ ...f, ...patch }));
  const setOpt = (name: string, v: string | boolean) => setForm((f) => ({ ...f, options: { ...f.options, [name]: v } }));
  const setSource = (i: number, patch: Partial<SourceForm>) => setForm((f) => ({ ...f, sources: f.sources.map((s, j) => (j === i ? { ...s, ...patch } : s)) }));
  const val = (e: Event) => (e.currentTarget as HTMLInputElement).value;
  const err = (id: string) => errors[id];
  const described = (id: string, hasHint: boolean | string | undefined) => (errors[id] ? `${id}-error` : hasHint ? `${id}-hint` : undefined);

  const changeType = (type: MsmType) => setForm((f) => ({ ...f, type, options: defaults(type), interval: String(DEFAULT_INTERVAL[type]) }));

  async function submit(e: Event) {
    e.preventDefault();
    setErrors({});
    setFormError(null);
    if (!key.trim()) {
      setErrors({ apikey: "An API key is needed to create a measurement." });
      return;
    }
    if (remember) sessionStorage.setItem(KEY_STORAGE, key.trim());
    else sessionStorage.removeItem(KEY_STORAGE);
    setBusy(true);
    try {
      const res = await postJSON<{ measurements?: number[] }>("/api/v2/measurements/", requestBody(form), key.trim());
      const id = res.measurements?.[0];
      if (id === undefined) {
        setFormError("The API created nothing and gave no id.");
        return;
      }
      navigate(`/measurements/${id}`);
    } catch (x) {
      const a = x instanceof ApiError ? x : new ApiError(0, String(x));
      if (a.status === 403) {
        setErrors({ apikey: `The API key was refused: ${a.detail}` });
        setFormError("The API key was refused.");
        return;
      }
      const control = controlOf(a.pointer);
      if (control) setErrors({ [control]: a.detail });
      else setFormError(a.status === 0 ? "The API cannot be reached; try again in a moment." : `The measurement was not created: ${a.detail}`);
      if (control) document.getElementById(control)?.focus();
    } finally {
      setBusy(false);
    }
  }

  const usesResolver = form.type === "dns" && form.options.use_probe_resolver === true;
  const input = (id: string, value: string, onInput: (v: string) => void, attrs: InputHTMLAttributes<HTMLInputElement> = {}, hasHint = false) => (
    <input id={id} value={value} onInput={(e) => onInput(val(e))} aria-invalid={errors[id] ? true : undefined} aria-describedby={described(id, hasHint)} {...attrs} />
  );

  return (
    <section data-view="create" data-ready="1">
      <h1>New measurement</h1>
      <p>
        The fields and defaults are RIPE Atlas's; the API checks them as the operator does and names the field that is wrong.
      </p>
      <form onSubmit={submit} noValidate aria-label="New measurement" data-testid="create-form">
        {formError ? (
          <div class="form-error" role="alert" data-testid="form-error">
            {formError}
          </div>
        ) : null}
        <fieldset>
          <legend>What to measure</legend>
          <div class="form-grid">
            <Field id="def-type" label="Type" error={err("def-type")}>
              <select id="def-type" value={form.type} onChange={(e) => changeType(val(e) as MsmType)}>
                {TYPES.map((t) => (
                  <option value={t}>{t}</option>
                ))}
              </select>
            </Field>
            <Field id="def-target" label={usesResolver ? "Target (not used: the probe's resolver)" : form.type === "dns" ? "Resolver to ask" : "Target (host name or address)"} error={err("def-target")}>
              {input("def-target", form.target, (v) => set({ target: v }), { disabled: usesResolver, placeholder: "e.g. ripe.net", autocomplete: "off" })}
            </Field>
            <Field id="def-af" label="Address family" error={err("def-af")}>
              <select id="def-af" value={form.af} onChange={(e) => set({ af: val(e) as "4" | "6" })}>
                <option value="4">IPv4</option>
                <option value="6">IPv6</option>
              </select>
            </Field>
            <Field id="def-description" label="Description" error={err("def-description")}>
              {input("def-description", form.description, (v) => set({ description: v }))}
            </Field>
            <div class="field check">
              <input id="def-resolve_on_probe" type="checkbox" checked={form.resolve_on_probe} onChange={(e) => set({ resolve_on_probe: (e.currentTarget as HTMLInputElement).checked })} />
              <label for="def-resolve_on_probe">Resolve the target on the probe</label>
            </div>
          </div>
        </fieldset>

        <fieldset>
          <legend>{form.type} options</legend>
          <div class="form-grid">
            {TYPE_FIELDS[form.type].map((spec) => {
              const id = `def-${spec.name}`;
              const v = form.options[spec.name];
              if (spec.kind === "check") {
                return (
                  <div class={errors[id] ? "field check invalid" : "field check"}>
                    <input id={id} type="checkbox" checked={v === true} onChange={(e) => setOpt(spec.name, (e.currentTarget as HTMLInputElement).checked)} aria-describedby={described(id, spec.hint)} />
                    <label for={id}>{spec.label}</label>
                    {spec.hint && !errors[id] ? <small id={`${id}-hint`}>{spec.hint}</small> : null}
                    {errors[id] ? (
                      <small class="error" id={`${id}-error`} role="alert" data-testid={`error-${id}`}>
                        {errors[id]}
                      </small>
                    ) : null}
                  </div>
                );
              }
              if (spec.kind === "select") {
                return (
                  <Field id={id} label={spec.label} error={err(id)} hint={spec.hint}>
                    <select id={id} value={String(v)} onChange={(e) => setOpt(spec.name, val(e))} aria-describedby={described(id, spec.hint)}>
                      {(spec.options ?? []).map((o) => (
                        <option value={o}>{o}</option>
                      ))}
                    </select>
                  </Field>
                );
              }
              return (
                <Field id={id} label={spec.label} error={err(id)} hint={spec.hint ?? (spec.min !== undefined ? `${spec.min} to ${spec.max}` : undefined)}>
                  {input(
                    id,
                    String(v ?? ""),
                    (x) => setOpt(spec.name, x),
                    spec.kind === "number" ? { type: "number", min: spec.min, max: spec.max, inputMode: "numeric" } : { type: "text" },
                    spec.hint !== undefined || spec.min !== undefined,
                  )}
                </Field>
              );
            })}
          </div>
        </fieldset>

        <fieldset>
          <legend>When</legend>
          <div class="form-grid">
            <div class="field check">
              <input id="oneoff-yes" type="radio" name="oneoff" checked={form.oneoff} onChange={() => set({ oneoff: true })} />
              <label for="oneoff-yes">One-off</label>
            </div>
            <div class="field check">
              <input id="oneoff" type="radio" name="oneoff" checked={!form.oneoff} onChange={() => set({ oneoff: false })} />
              <label for="oneoff">Repeated</label>
            </div>
            {!form.oneoff ? (
              <>
                <Field id="def-interval" label="Interval (s)" error={err("def-interval")} hint="60 to 604800">
                  {input("def-interval", form.interval, (v) => set({ interval: v }), { type: "number", min: 60 }, true)}
                </Field>
                <Field id="def-spread" label="Spread (s)" error={err("def-spread")} hint="default: the interval">
                  {input("def-spread", form.spread, (v) => set({ spread: v }), { type: "number", min: 0 }, true)}
                </Field>
              </>
            ) : null}
            <Field id="start" label="Start (UTC, empty: now)" error={err("start")}>
              {input("start", form.start, (v) => set({ start: v }), { type: "datetime-local" })}
            </Field>
            <Field id="stop" label="Stop (UTC, optional)" error={err("stop")}>
              {input("stop", form.stop, (v) => set({ stop: v }), { type: "datetime-local" })}
            </Field>
          </div>
          {errors.oneoff ? (
            <small class="error" role="alert" data-testid="error-oneoff">
              {errors.oneoff}
            </small>
          ) : null}
        </fieldset>

        <fieldset>
          <legend>Probes</legend>
          {form.sources.map((s, i) => (
            <div class="source-row" role="group" aria-label={`Probe source ${i + 1}`}>
              <Field id={`src-${i}-type`} label={`Source ${i + 1}: type`} error={err(`src-${i}-type`)}>
                <select id={`src-${i}-type`} value={s.type} onChange={(e) => setSource(i, { type: val(e) as SourceForm["type"], value: val(e) === "area" ? "WW" : "" })}>
                  {SOURCE_TYPES.map((t) => (
                    <option value={t}>{t}</option>
                  ))}
                </select>
              </Field>
              <Field id={`src-${i}-value`} label={sourceLabel(s.type)} error={err(`src-${i}-value`)}>
                {s.type === "area" ? (
                  <select id={`src-${i}-value`} value={s.value} onChange={(e) => setSource(i, { value: val(e) })}>
                    {AREAS.map((a) => (
                      <option value={a}>{a}</option>
                    ))}
                  </select>
                ) : (
                  input(`src-${i}-value`, s.value, (v) => setSource(i, { value: v }), { placeholder: sourcePlaceholder(s.type) })
                )}
              </Field>
              <Field id={`src-${i}-requested`} label="Probes wanted" error={err(`src-${i}-requested`)}>
                {input(`src-${i}-requested`, s.requested, (v) => setSource(i, { requested: v }), { type: "number", min: 1 })}
              </Field>
              <Field id={`src-${i}-include`} label="Only with tags" error={err(`src-${i}-include`)} hint="comma-separated">
                {input(`src-${i}-include`, s.include, (v) => setSource(i, { include: v }), {}, true)}
              </Field>
              <Field id={`src-${i}-exclude`} label="Without tags" hint="comma-separated">
                {input(`src-${i}-exclude`, s.exclude, (v) => setSource(i, { exclude: v }), {}, true)}
              </Field>
              {form.sources.length > 1 ? (
                <button type="button" class="secondary" onClick={() => set({ sources: form.sources.filter((_, j) => j !== i) })} aria-label={`Remove probe source ${i + 1}`}>
                  Remove
                </button>
              ) : null}
            </div>
          ))}
          <p>
            <button type="button" class="secondary" onClick={() => set({ sources: [...form.sources, { type: "country", value: "", requested: "5", include: "", exclude: "" }] })}>
              Add a probe source
            </button>
          </p>
        </fieldset>

        <fieldset>
          <legend>API key</legend>
          <div class="form-grid">
            <Field id="apikey" label="API key" error={err("apikey")} hint="sent as Authorization: Key …">
              {input("apikey", key, setKey, { type: "password", autocomplete: "off" }, true)}
            </Field>
            <div class="field check">
              <input id="remember" type="checkbox" checked={remember} onChange={(e) => setRemember((e.currentTarget as HTMLInputElement).checked)} />
              <label for="remember">Remember for this tab</label>
            </div>
          </div>
        </fieldset>
        <button type="submit" disabled={busy} data-testid="create-submit">
          {busy ? "Creating…" : "Create measurement"}
        </button>
      </form>
    </section>
  );
}

function sourceLabel(t: SourceForm["type"]): string {
  return { area: "Area", country: "Country code", asn: "AS number", prefix: "Prefix", probes: "Probe ids", msm: "Measurement id" }[t];
}

function sourcePlaceholder(t: SourceForm["type"]): string {
  return { area: "", country: "NL", asn: "3333", prefix: "192.0.2.0/24", probes: "1001,1002", msm: "1000001" }[t];
}
