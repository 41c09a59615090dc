import{a as e,b as r}from"./chunk-L3BWUULH.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{e as ArchitectureModule,r as createArchitectureServices};
