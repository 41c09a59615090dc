import{a as e,b as r}from"./chunk-JZPKBRWP.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{e as PieModule,r as createPieServices};
