import{a as o,b as e}from"./chunk-74S62NY7.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{o as InfoModule,e as createInfoServices};
