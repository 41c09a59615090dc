import{a as e,b as r}from"./chunk-OCKTVZDM.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{e as CynefinModule,r as createCynefinServices};
