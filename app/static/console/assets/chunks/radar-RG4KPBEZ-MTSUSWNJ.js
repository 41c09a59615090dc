import{a as r,b as e}from"./chunk-XFVUHPQN.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{r as RadarModule,e as createRadarServices};
