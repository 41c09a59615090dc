import{a as e,b as o}from"./chunk-ZSSQ2R4E.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{e as EventModelingModule,o as createEventModelingServices};
