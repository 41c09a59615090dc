import{a as e,b as r}from"./chunk-J73XGLAJ.js";import"./chunk-YRFK5FJW.js";import"./chunk-QHDNOTBI.js";export{e as TreeViewModule,r as createTreeViewServices};
