import{a as r,b as o}from"./chunk-T7STRCB4.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{r as RailroadModule,o as createRailroadServices};
