/*
** ragqa.h: the question-answering fixture of the retrieval tests: the
** documents of the ingestion fixture (tests/test_rag_cli.c: a pump manual
** PDF with a running header and footer, a Chinese PDF, GBK notes, a
** Markdown readme), grown to several pages each, joined by a Chinese
** Markdown FAQ and two distractors (a dishwasher manual, a Chinese cloud-sync
** guide) that share most of their words with the others, and 30 questions,
** half Chinese, half English, each with the file and a phrase its answer
** passage contains.
**
** The questions are worded as users ask them, not as the documents say it
** ("How often should the strainer be cleaned?" for "Clean the strainer every
** month"), and the documents compete for the same words (filter, warranty,
** frost, drain, draws; 同步, 上传, 密码, 加密), so keyword retrieval has to
** weigh terms, not just find them. Header-only (static), like ragfix.h.
*/
#ifndef KB_TESTS_RAGQA_H
#define KB_TESTS_RAGQA_H

#include "rag/rag.h"
#include "tests/ragfix.h"

typedef struct RagQaQuestion {
    const char *question;
    const char *file;   /* base name of the document that answers it */
    const char *phrase; /* text the answer passage contains */
} RagQaQuestion;

static const RagQaQuestion ragqa_questions[] = {
    {"Do I need to prime the pump before using it?", "pump.pdf", "must be primed"},
    {"How often should the strainer be cleaned?", "pump.pdf", "Clean the strainer every month"},
    {"How long is the warranty?", "pump.pdf", "two years of normal household use"},
    {"What should I do before opening the pump housing?", "pump.pdf", "disconnect the power supply"},
    {"Why must the pump never run dry?", "pump.pdf", "mechanical seal is cooled"},
    {"How high above the floor should the pump be mounted?", "pump.pdf", "10 cm above the floor"},
    {"What is the maximum length of the suction pipe?", "pump.pdf", "shorter than 7 metres"},
    {"How much current does the motor draw?", "pump.pdf", "4.2 amperes"},
    {"When should the mechanical seal be replaced?", "pump.pdf", "Replace the mechanical seal every two years"},
    {"The motor hums but does not turn. What is wrong?", "pump.pdf", "capacitor may be faulty"},
    {"How do I protect the pump from frost in winter?", "pump.pdf", "drain the pump through the drain plug"},
    {"Does the warranty cover damage from dry running?", "pump.pdf", "does not cover damage from dry running"},
    {"What should I do if the impeller jams?", "readme.md", "call us"},
    {"How often does the application check for updates?", "readme.md", "once a week"},
    {"Where is the serial number printed?", "readme.md", "label under the lid"},
    {"离线使用时需要联网吗？", "说明.pdf", "不需要连接任何网络"},
    {"检索时问题是怎么处理的？", "说明.pdf", "切成二元组"},
    {"安装需要管理员权限吗？", "说明.pdf", "不需要管理员权限"},
    {"同步时会重新读取所有文件吗？", "说明.pdf", "只读取新增和修改过的文件"},
    {"删除的文件还会留在索引里吗？", "说明.pdf", "自动从索引中移除"},
    {"程序会上传我的文档吗？", "说明.pdf", "从不上传文档内容"},
    {"运行需要多少内存？", "说明.pdf", "至少八GB内存"},
    {"没有显卡能用吗？", "说明.pdf", "没有显卡也可以运行"},
    {"扫描版的PDF能被索引吗？", "说明.pdf", "没有文字层"},
    {"加密的PDF怎么办？", "说明.pdf", "需要先解除密码"},
    {"向量数据库和全文检索有什么区别？", "笔记.txt", "按语义相似度"},
    {"倒数排名融合的得分怎么计算？", "笔记.txt", "一除以六十加名次"},
    {"忘记密码怎么办？", "常见问题.md", "找回密码"},
    {"团队版多少钱？", "常见问题.md", "每人每月三十元"},
    {"数据库多久备份一次？", "常见问题.md", "每天凌晨自动备份"},
};
#define RAGQA_N_QUESTIONS (int)(sizeof ragqa_questions / sizeof ragqa_questions[0])

/* Writes dir/name (creating dir/中文 when needed). Returns 0 on success. */
static RAGFIX_UNUSED int ragqa_write(const char *dir, const char *name, const char *text)
{
    char *p = g_build_filename(dir, name, NULL);
    char *parent = g_path_get_dirname(p);
    g_mkdir_with_parents(parent, 0700);
    int rc = ragfix_write(p, text, strlen(text));
    g_free(parent);
    g_free(p);
    return rc;
}

/* --- the documents' source text: what the fixture writes (as PDF pages,
** GBK or UTF-8), kept here so a test can read it without our extraction --- */

static RAGFIX_UNUSED const RagFixPage ragqa_pump[] = {
    {"Safety. Always disconnect the power supply before opening the pump\nhousing. Never run the pump dry: "
     "the mechanical seal is cooled by\nthe water it moves.", NULL, "Safety"},
    {"Installation. Mount the pump on a level concrete base at least\n10 cm above the floor. Use a suction "
     "pipe at least as wide as the\ninlet (40 mm) and keep it shorter than 7 metres.", NULL, "Installation"},
    {"Priming. The centrifugal pump must be primed before the first\nstart. Fill the casing with water "
     "through the priming plug until\nwater flows out of the vent.", NULL, "Priming"},
    {"Operation. Start the pump with the discharge valve slightly open.\nThe motor draws 4.2 amperes at full "
     "load and the flow rate\nreaches 60 litres per minute.", NULL, "Operation"},
    {"Maintenance. Clean the strainer every month to keep the flow\nsteady. Replace the mechanical seal every "
     "two years, or sooner\nwhen water drips from the shaft.", NULL, "Maintenance"},
    {"Troubleshooting. If the motor hums but does not turn, the\ncapacitor may be faulty: have an electrician "
     "replace it. If the\npump delivers no water, check the priming and look for air\nleaks in the suction pipe.",
     NULL, "Troubleshooting"},
    {"Winter. Before the first frost, drain the pump through the drain\nplug at the bottom of the casing, or "
     "the water can freeze and\ncrack it.", NULL, "Winter"},
    {"Warranty. The warranty covers two years of normal household use.\nIt does not cover damage from dry "
     "running, frost or sand in the\nwater.", NULL, "Warranty"},
};
static RAGFIX_UNUSED const RagFixPage ragqa_zh[] = {
    {"本产品支持离线知识库问答，\n所有文档都保存在本地，\n不需要连接任何网络。", NULL, NULL},
    {"检索时先把问题切成二元组，\n再按相关度排序。", NULL, NULL},
    {"安装：解压安装包后运行安装程序，\n默认安装在用户目录下，\n不需要管理员权限。", NULL, NULL},
    {"同步：添加文件夹以后执行同步命令，\n程序只读取新增和修改过的文件，\n删除的文件会自动从索引中移除。", NULL, NULL},
    {"隐私：程序从不上传文档内容，\n也不收集使用数据，\n日志只保存在本机。", NULL, NULL},
    {"硬件要求：至少八GB内存，\n推荐使用支持AVX2指令集的处理器，\n没有显卡也可以运行。", NULL, NULL},
    {"常见问题：如果扫描版PDF没有文字层，\n程序会跳过它并在状态页中说明原因。\n加密的PDF需要先解除密码。", NULL, NULL},
};
static RAGFIX_UNUSED const char ragqa_readme[] =
    "# Setup\n\nRun the installer.\n\n## Troubleshooting\n\nIf the Impeller jams, call us.\n\n"
    "## Updates\n\nThe application checks for updates once a week. You can turn this off in the settings "
    "under Privacy.\n\n"
    "## Support\n\nEmail support@example.com with your serial number, which is printed on the label under "
    "the lid.\n\n"
    "## Data export\n\nExport your notes as Markdown from the File menu; images are saved next to the file.\n";
static RAGFIX_UNUSED const char ragqa_notes[] =
    "向量数据库与全文检索的比较。\n\n"
    "向量数据库按语义相似度查找段落，适合同义表达。全文检索按关键词匹配，适合型号、代码等精确查找。"
    "两者结合的混合检索通常效果最好。\n\n"
    "倒数排名融合把两个排名列表合并，每个结果的得分是一除以六十加名次之和。\n";
static RAGFIX_UNUSED const RagFixPage ragqa_dish[] = {
    {"Filters. Rinse the coarse filter under running water once a\nweek. A blocked filter leaves food residue "
     "on the dishes and\nthe pump of the dishwasher works harder.", NULL, "Filters"},
    {"Installation. Connect the drain hose to the sink trap and keep\nthe water inlet pressure between 0.5 and "
     "10 bar. The hose must\nnot be longer than 4 metres.", NULL, "Installation"},
    {"Power. The heater draws 2 kW: connect the machine to a socket\nwith its own 16 A fuse and never use an "
     "extension cable.", NULL, "Power"},
    {"Frost. If the machine stands in an unheated room in winter,\nempty the water softener and run the drain "
     "program before\nthe first frost.", NULL, "Frost"},
    {"Warranty. The dishwasher warranty lasts one year and covers\nparts and labour, but not glass breakage or "
     "damage from\nlimescale.", NULL, "Warranty"},
};
static RAGFIX_UNUSED const char ragqa_cloud[] =
    "# 云同步\n\n云同步功能需要登录账号，文件会加密后上传到服务器，下载时自动解密。\n\n"
    "# 冲突\n\n同一个文件在两台电脑上同时修改时，程序保留两个版本，并在文件名后加上设备名称。\n\n"
    "# 密码\n\n修改密码后，其他设备需要重新登录。账号密码至少八位，必须包含数字。\n\n"
    "# 流量\n\n首次同步会上传全部文件，之后只上传修改过的部分，可以在设置中限制上传速度。\n";
static RAGFIX_UNUSED const char ragqa_faq[] =
    "# 账号\n\n忘记密码时，在登录页点击“找回密码”，验证码会发送到注册邮箱。\n\n"
    "# 费用\n\n个人版永久免费，团队版按每人每月三十元收费，可以随时取消。\n\n"
    "# 备份\n\n数据库文件每天凌晨自动备份一次，保留最近七天的备份。\n";

/* One fixture document: its path under the fixture folder and its source
** text (pages for a PDF, else text). */
typedef struct RagQaDoc {
    const char *path;
    const RagFixPage *pages;
    int n_pages;
    const char *text;
} RagQaDoc;

#define RAGQA_PAGES(a) a, (int)(sizeof a / sizeof a[0]), NULL
static RAGFIX_UNUSED const RagQaDoc ragqa_docs[] = {
    {"pump.pdf", RAGQA_PAGES(ragqa_pump)},
    {"中文/说明.pdf", RAGQA_PAGES(ragqa_zh)},
    {"中文/笔记.txt", NULL, 0, ragqa_notes},
    {"readme.md", NULL, 0, ragqa_readme},
    {"中文/常见问题.md", NULL, 0, ragqa_faq},
    {"中文/云同步.md", NULL, 0, ragqa_cloud},
    {"dishwasher.pdf", RAGQA_PAGES(ragqa_dish)},
};
#undef RAGQA_PAGES
#define RAGQA_N_DOCS (int)(sizeof ragqa_docs / sizeof ragqa_docs[0])

/* Writes the fixture documents into dir (which exists). Returns 0 on success. */
static RAGFIX_UNUSED int ragqa_write_documents(const char *dir)
{
    char *pump = g_build_filename(dir, "pump.pdf", NULL), *zdir = g_build_filename(dir, "中文", NULL);
    char *zpdf = g_build_filename(zdir, "说明.pdf", NULL), *gbk = g_build_filename(zdir, "笔记.txt", NULL);
    RagFixPdf espec = {"Pump", NULL, "Pump Manual", "- %d -", ragqa_pump, (int)(sizeof ragqa_pump / sizeof ragqa_pump[0])};
    RagFixPdf zspec = {"说明", NULL, NULL, NULL, ragqa_zh, (int)(sizeof ragqa_zh / sizeof ragqa_zh[0])};
    g_mkdir_with_parents(zdir, 0700);
    int rc = ragfix_write_pdf(pump, &espec);
    if (rc == 0) rc = ragfix_write_pdf(zpdf, &zspec);
    if (rc == 0) rc = ragfix_write_encoded(gbk, ragqa_notes, "GBK", NULL, 0);
    if (rc == 0) rc = ragqa_write(dir, "readme.md", ragqa_readme);
    if (rc == 0) rc = ragqa_write(dir, "中文/常见问题.md", ragqa_faq);
    if (rc == 0) rc = ragqa_write(dir, "中文/云同步.md", ragqa_cloud);
    char *dpdf = g_build_filename(dir, "dishwasher.pdf", NULL);
    RagFixPdf dspec = {"Dishwasher", NULL, NULL, "Page %d", ragqa_dish, (int)(sizeof ragqa_dish / sizeof ragqa_dish[0])};
    if (rc == 0) rc = ragfix_write_pdf(dpdf, &dspec);
    g_free(pump), g_free(zdir), g_free(zpdf), g_free(gbk), g_free(dpdf);
    return rc;
}

/* True when one of hits[0..n) is in `file` (base name) and contains phrase. */
static RAGFIX_UNUSED int ragqa_found(const RagHit *hits, int n, const RagQaQuestion *q)
{
    for (int i = 0; i < n; i++) {
        const char *base = strrchr(hits[i].file, '/');
        base = base ? base + 1 : hits[i].file;
        if (strcmp(base, q->file) == 0 && strstr(hits[i].text, q->phrase)) return 1;
    }
    return 0;
}

#endif /* KB_TESTS_RAGQA_H */
