import{a as r,b as e}from"./chunk-W6AUXIFK.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{r as GitGraphModule,e as createGitGraphServices};
