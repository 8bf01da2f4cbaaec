"""The report page's style sheet and its print helper (kept apart from the writer that uses them).

Screen: max 1,200 px wide, tables that wrap instead of scrolling (below 900 px every table fits
the width, its cells breaking anywhere), figure grids that stack below 900 px. Print: no modebars, no figure split across pages and a map grid kept together, long tables
and collapsed sections (opened) free to break between rows (so they leave no near-blank page),
headers repeated, plots sized to the paper by :data:`PRINT_JS`.
"""

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:1200px;
color:#222;padding:0 1rem;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd;
padding-bottom:.2rem} h3{font-size:1.05rem;margin-top:1.5rem}
h2 a.anchor,h3 a.anchor{color:#bbb;text-decoration:none;margin-left:.4rem;font-weight:normal}
table{border-collapse:collapse;margin:.5rem 0;font-size:.88rem;max-width:100%}
th,td{border:1px solid #ddd;padding:.25rem .45rem;text-align:left;vertical-align:top;overflow-wrap:break-word}
td.brk,th.brk{overflow-wrap:anywhere} th{background:#f4f4f4;font-weight:600;hyphens:manual} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th.num{text-align:right}
.caption{color:#555;font-size:.85rem;margin:.2rem 0 1rem} .meta{color:#555;font-size:.85rem}
code{background:#f4f4f4;padding:0 .2rem;overflow-wrap:anywhere}
.figsettings{color:#666;font-size:.76rem;margin:.1rem 0 .3rem;overflow-wrap:anywhere}
.figlinks{font-size:.8rem;margin:.1rem 0 1rem} .figlinks a{margin-right:.6rem}
.umae-figure{min-height:320px;min-width:0} .tablewrap{overflow-x:auto;max-width:100%}
nav.toc{background:#fafafa;border:1px solid #e4e4e4;padding:.4rem 1rem;margin:1rem 0;font-size:.9rem}
nav.toc ol{margin:.3rem 0;padding-left:1.4rem;columns:2;column-gap:2rem} nav.toc li{break-inside:avoid}
.sentences{font-size:1rem;margin:.4rem 0 .8rem;padding-left:1.2rem} .sentences li{margin:.25rem 0}
.verdict{border-left:4px solid #3b6ea8;background:#f5f8fc;padding:.5rem 1rem;margin:.6rem 0}
.figgrid{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:.8rem}
.figgrid>div{min-width:0}
.swatches{display:flex;flex-wrap:wrap;gap:.2rem .9rem;font-size:.8rem;margin:.3rem 0}
.swatch{display:inline-block;width:.8rem;height:.8rem;border-radius:50%;margin-right:.3rem;vertical-align:-1px}
.glyph{display:inline-block;width:1rem;margin-right:.2rem;text-align:center}
details{margin:.8rem 0;border:1px solid #e4e4e4;padding:.3rem .8rem} details>summary{cursor:pointer;font-weight:600}
ul.files{columns:3;font-size:.88rem} ul.files li{overflow-wrap:anywhere} ul.files a{margin-right:.4rem}
@media (max-width:900px){body{margin:.8rem auto;padding:0 .6rem}.figgrid{grid-template-columns:1fr}
.tablewrap table{width:100%;table-layout:fixed} th,td{overflow-wrap:anywhere} td.num{white-space:normal}
nav.toc ol,ul.files{columns:1} h1{font-size:1.3rem}}
@media print{body{max-width:none;margin:0;padding:0;font-size:10pt}
.modebar,.modebar-container,.figlinks{display:none!important}
.umae-figure,.figgrid,.verdict,tr{break-inside:avoid;page-break-inside:avoid}
thead{display:table-header-group}
h2,h3{break-after:avoid;page-break-after:avoid} .tablewrap{overflow:visible} a{color:inherit;text-decoration:none}}
"""

#: Before printing: open collapsed sections and size every plot to the paper width; after: restore.
PRINT_JS = """
(function(){function plots(){return document.querySelectorAll('.plotly-graph-div');}
window.addEventListener('beforeprint',function(){document.querySelectorAll('details').forEach(function(d){
d.dataset.wasOpen=d.open;d.open=true;});if(window.Plotly){plots().forEach(function(p){
var w=p.closest('.figgrid')?330:680;Plotly.relayout(p,{width:w});});}});
window.addEventListener('afterprint',function(){document.querySelectorAll('details').forEach(function(d){
d.open=d.dataset.wasOpen==='true';});if(window.Plotly){plots().forEach(function(p){
Plotly.relayout(p,{width:null,autosize:true});});}});})();
"""
