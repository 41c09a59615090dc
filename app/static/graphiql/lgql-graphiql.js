// lgql's own addition to the vendored GraphiQL (not from npm): subscriptions show every event.
//
// GraphiQL 3 replaces its result pane with each result a subscription yields, so a `runStream`
// showed only its last event. `lgqlAccumulatingFetcher(fetcher)` wraps a fetcher: a subscription's
// results come out as one growing object, `{"subscription": {"events": N}, "results": [...]}`,
// every result so far in order (the newest last); queries and mutations pass through unchanged.
// Works in the browser (window.lgqlAccumulatingFetcher) and under Node (module.exports), where
// tests/test_graphql_spec.py checks it.
(function (root) {
  "use strict";

  // Past this many results the oldest are dropped (the pane re-renders the whole list each time).
  const MAX_RESULTS = 1000;

  function operationType(documentAST, operationName) {
    if (!documentAST || !documentAST.definitions) return null;
    const operations = documentAST.definitions.filter((d) => d.kind === "OperationDefinition");
    const chosen = operationName
      ? operations.find((d) => d.name && d.name.value === operationName)
      : operations.length === 1
        ? operations[0]
        : null;
    return chosen ? chosen.operation : null;
  }

  function isAsyncIterable(value) {
    return value != null && typeof value[Symbol.asyncIterator] === "function";
  }

  // One iterator, returned by every [Symbol.asyncIterator]() call: GraphiQL stops a
  // subscription by calling `value[Symbol.asyncIterator]().return()`.
  function accumulate(iterable) {
    const inner = iterable[Symbol.asyncIterator]();
    const results = [];
    let dropped = 0;
    const iterator = {
      async next() {
        const step = await inner.next();
        if (step.done) return step;
        results.push(step.value);
        if (results.length > MAX_RESULTS) {
          results.shift();
          dropped += 1;
        }
        const summary = { events: results.length + dropped };
        if (dropped) summary.dropped = dropped;
        return { done: false, value: { subscription: summary, results: results.slice() } };
      },
      return(value) {
        return inner.return ? inner.return(value) : Promise.resolve({ done: true, value });
      },
      throw(error) {
        return inner.throw ? inner.throw(error) : Promise.reject(error);
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  function lgqlAccumulatingFetcher(fetcher) {
    return function (params, options) {
      const result = fetcher(params, options);
      const type = operationType(options && options.documentAST, params && params.operationName);
      if (type !== "subscription") return result;
      return Promise.resolve(result).then((value) =>
        isAsyncIterable(value) ? accumulate(value) : value,
      );
    };
  }

  if (typeof module === "object" && module.exports) {
    module.exports = { lgqlAccumulatingFetcher };
  } else {
    root.lgqlAccumulatingFetcher = lgqlAccumulatingFetcher;
  }
})(typeof window !== "undefined" ? window : globalThis);
