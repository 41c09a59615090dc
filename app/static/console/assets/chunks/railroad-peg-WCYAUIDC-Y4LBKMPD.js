import{a as e,b as r}from"./chunk-3RBPUBVF.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{e as RailroadPegModule,r as createRailroadPegServices};
