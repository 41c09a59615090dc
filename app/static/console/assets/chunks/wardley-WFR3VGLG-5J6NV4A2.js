import{a as e,b as r}from"./chunk-OYX7I3V6.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{e as WardleyModule,r as createWardleyServices};
