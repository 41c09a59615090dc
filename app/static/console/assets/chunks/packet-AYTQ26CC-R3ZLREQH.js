import{a as e,b as r}from"./chunk-XHYTH73X.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{e as PacketModule,r as createPacketServices};
