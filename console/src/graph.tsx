// The graph's picture: the Mermaid text the API gives (`Assistant.graph.mermaid`) rendered to
// SVG in the page. Mermaid is large, so it is a separate chunk loaded on first use.
import { useEffect, useRef, useState } from "preact/hooks";

let mermaidReady: Promise<any> | null = null;
let counter = 0;

function loadMermaid(): Promise<any> {
  mermaidReady ??= import("mermaid").then(({ default: mermaid }) => {
    mermaid.initialize({
      startOnLoad: false,
      securityLevel: "strict",
      theme: "neutral",
      // Plain SVG <text> labels (no foreignObject HTML): crisp, selectable, searchable.
      htmlLabels: false,
      flowchart: { htmlLabels: false },
    });
    return mermaid;
  });
  return mermaidReady;
}

/** The SVG elements of node `name` (Mermaid ids look like `…flowchart-<name>-<n>`). */
function nodeElements(svg: Element, name: string): Element[] {
  const found: Element[] = [];
  for (const el of svg.querySelectorAll("g.node")) {
    const dataId = el.getAttribute("data-id");
    const id = el.id || "";
    if (dataId === name || new RegExp(`flowchart-${name.replace(/[^\w-]/g, "\\$&")}-\\d+$`).test(id))
      found.push(el);
  }
  return found;
}

export function GraphPicture(props: { mermaid: string; active?: string[]; done?: string[] }) {
  const host = useRef<HTMLDivElement>(null);
  const [error, setError] = useState("");
  const [rendered, setRendered] = useState(0);
  useEffect(() => {
    let live = true;
    setError("");
    loadMermaid()
      // LangGraph wraps some labels in <p>…</p>, which plain SVG labels would show as text.
      .then((mermaid) => mermaid.render(`lgql-graph-${++counter}`, props.mermaid.replace(/<\/?p>/g, "")))
      .then(({ svg }: { svg: string }) => {
        if (!live || !host.current) return;
        host.current.innerHTML = svg;
        setRendered((n) => n + 1);
      })
      .catch((e: Error) => live && setError(e.message || String(e)));
    return () => {
      live = false;
    };
  }, [props.mermaid]);
  useEffect(() => {
    const svg = host.current?.querySelector("svg");
    if (!svg) return;
    for (const el of svg.querySelectorAll(".lgql-active, .lgql-done"))
      el.classList.remove("lgql-active", "lgql-done");
    for (const name of props.done ?? []) for (const el of nodeElements(svg, name)) el.classList.add("lgql-done");
    for (const name of props.active ?? []) for (const el of nodeElements(svg, name)) el.classList.add("lgql-active");
  }, [rendered, (props.active ?? []).join("\n"), (props.done ?? []).join("\n")]);
  return (
    <div class="graph">
      <div ref={host} class="graph-svg" data-graph-rendered={rendered > 0 ? "true" : "false"}>
        {!rendered && !error && <p class="muted">drawing the graph…</p>}
      </div>
      {error && <pre class="error">{error}</pre>}
    </div>
  );
}
