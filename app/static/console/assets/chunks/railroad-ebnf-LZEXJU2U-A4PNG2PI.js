import{a as r,b as o}from"./chunk-OSZFSMXJ.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{r as RailroadEbnfModule,o as createRailroadEbnfServices};
