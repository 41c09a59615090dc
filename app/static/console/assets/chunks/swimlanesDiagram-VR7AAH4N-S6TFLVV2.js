import{a as o,b as e}from"./chunk-XXOJV2WK.js";import"./chunk-JRAHLUQM.js";import"./chunk-NBH7YOBD.js";import"./chunk-UXTVXWY4.js";import"./chunk-MM24SMIB.js";import"./chunk-75WPSWOQ.js";import"./chunk-WT4THMD3.js";import"./chunk-BD5BHZBT.js";import"./chunk-JHX2IJIQ.js";import"./chunk-IXB3KGQK.js";import"./chunk-AV3YBM3T.js";import"./chunk-YORIST7Z.js";import"./chunk-XVNT7LOY.js";import"./chunk-3VYHKCJT.js";import"./chunk-GNAI4B47.js";import"./chunk-ZFWV2XOJ.js";import"./chunk-I75A7CXL.js";import"./chunk-YRLJZJ7R.js";import"./chunk-NXDMN25G.js";import{a as r}from"./chunk-EIBFAW37.js";import"./chunk-QHDNOTBI.js";var m=r(t=>`${o(t)}
  .swimlane.cluster rect {
    stroke: ${t.clusterBorder} !important;
  }
  [data-look="neo"].cluster rect {
    filter: none;
  }
`,"getStyles"),i=m,B=e({defaultLayout:"swimlane",styles:i});export{B as diagram};
