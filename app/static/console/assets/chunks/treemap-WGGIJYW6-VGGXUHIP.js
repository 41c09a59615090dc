import{a as e,b as r}from"./chunk-ZSUB77MQ.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{e as TreemapModule,r as createTreemapServices};
