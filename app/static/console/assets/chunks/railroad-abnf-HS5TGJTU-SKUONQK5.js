import{a as r,b as o}from"./chunk-3KT6PKCT.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{r as RailroadAbnfModule,o as createRailroadAbnfServices};
