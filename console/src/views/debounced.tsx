// A text input that commits its value after a pause in typing (or at once on Enter), so a
// filter over thousands of rows is not re-run on every keystroke. The committed value
// comes back as `value` (from the query string) and replaces the text when it changes
// from outside (reset, back button).
import { useEffect, useRef, useState } from "preact/hooks";

/** Milliseconds of quiet before a typed filter applies. */
export const DEBOUNCE_MS = 250;

export function DebouncedInput(props: {
  id: string;
  value: string;
  onCommit: (v: string) => void;
  placeholder?: string;
  list?: string;
  invalid?: boolean;
  describedBy?: string;
  inputMode?: "text" | "numeric";
  size?: number;
}) {
  const [text, setText] = useState(props.value);
  const timer = useRef<number | undefined>(undefined);
  const commit = useRef(props.onCommit);
  commit.current = props.onCommit;
  // A value from outside replaces the text, unless it is what the text commits to (the
  // callers trim): a space typed before a pause stays.
  useEffect(() => setText((t) => (t.trim() === props.value.trim() ? t : props.value)), [props.value]);
  useEffect(() => () => window.clearTimeout(timer.current), []);
  return (
    <input
      id={props.id}
      type="text"
      value={text}
      placeholder={props.placeholder}
      list={props.list}
      size={props.size}
      inputMode={props.inputMode}
      autoComplete="off"
      spellcheck={false}
      aria-invalid={props.invalid ? "true" : undefined}
      aria-describedby={props.describedBy}
      onInput={(e) => {
        const v = e.currentTarget.value;
        setText(v);
        window.clearTimeout(timer.current);
        timer.current = window.setTimeout(() => commit.current(v), DEBOUNCE_MS);
      }}
      onKeyDown={(e) => {
        if (e.key === "Enter") {
          e.preventDefault();
          window.clearTimeout(timer.current);
          commit.current(e.currentTarget.value);
        }
      }}
    />
  );
}
