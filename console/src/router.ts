// History-API routing under BASE: every view has its own URL, so links and reloads open it.
import { BASE } from "./api";
import { signal } from "./signal";

const current = (): string => {
  const path = window.location.pathname;
  const rest = path.startsWith(BASE) ? path.slice(BASE.length) : path;
  return rest.replace(/^\/+|\/+$/g, "");
};

/** The path below BASE, without slashes at either end ("" for the home view). */
export const route = signal(current());
/** The query string of the current URL. */
export const search = signal(window.location.search);

window.addEventListener("popstate", () => {
  route.set(current());
  search.set(window.location.search);
});

export function href(path: string): string {
  return path ? `${BASE}/${path}` : `${BASE}/`;
}

export function navigate(path: string, replace = false): void {
  const url = href(path);
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route.set(current());
  search.set(window.location.search);
  window.scrollTo(0, 0);
}

/** A click handler for in-app links: plain clicks navigate without a page load. */
export function onLink(e: MouseEvent): void {
  const a = (e.currentTarget as HTMLAnchorElement) || null;
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
  const target = a.getAttribute("href") || "";
  if (!target.startsWith(BASE)) return;
  e.preventDefault();
  navigate(target.slice(BASE.length).replace(/^\/+|\/+$/g, ""));
}
